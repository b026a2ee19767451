package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
)

// normalizeArgs rewrites the original tool's Go-flag spellings into the ones
// kong parses: one or two dashes, -flag=value or -flag value, a short flag
// (-e) or any unique prefix of a long name (-endp, -log-f), all become
// --long-name. A prefix shared by one of the original tool's flags (tagged
// original) and newer ones means the original's, so that its users' scripts
// keep their meaning (-log-f is -log-file, not -log-format). Any other
// ambiguous prefix is an error listing the candidates; an
// unknown flag is an error naming it. A flag's value and everything after "--"
// are left alone.
func normalizeArgs(args []string, flags []*kong.Flag) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(out, args[i:]...), nil
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			out = append(out, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		flag, err := lookupFlag(name, flags)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arg, err)
		}
		switch {
		case hasValue:
			out = append(out, "--"+flag.Name+"="+value)
		case flag.IsBool():
			out = append(out, "--"+flag.Name)
		case i+1 == len(args):
			return nil, fmt.Errorf("%s: needs a value; run with --help to see what it takes", arg)
		default:
			// The next argument is this flag's value, even if it starts with a
			// dash; joining them keeps kong from reading it as a flag.
			i++
			out = append(out, "--"+flag.Name+"="+args[i])
		}
	}
	return out, nil
}

// lookupFlag finds the flag a name means: an exact long name, then a short
// name, then a unique prefix of a long name.
func lookupFlag(name string, flags []*kong.Flag) (*kong.Flag, error) {
	for _, flag := range flags {
		if flag.Name == name {
			return flag, nil
		}
	}
	for _, flag := range flags {
		if flag.Short != 0 && string(flag.Short) == name {
			return flag, nil
		}
	}
	var candidates []*kong.Flag
	for _, flag := range flags {
		if name != "" && strings.HasPrefix(flag.Name, name) {
			candidates = append(candidates, flag)
		}
	}
	if len(candidates) > 1 {
		var originals []*kong.Flag
		for _, flag := range candidates {
			if flag.Tag.Has("original") {
				originals = append(originals, flag)
			}
		}
		if len(originals) == 1 {
			return originals[0], nil
		}
	}
	switch len(candidates) {
	case 1:
		return candidates[0], nil
	case 0:
		return nil, fmt.Errorf("unknown flag; run with --help to see the flags")
	}
	names := make([]string, len(candidates))
	for i, flag := range candidates {
		names[i] = "-" + flag.Name
	}
	sort.Strings(names)
	return nil, fmt.Errorf("ambiguous flag; it could be %s", strings.Join(names, ", "))
}
