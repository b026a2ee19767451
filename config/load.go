// Package config owns the configuration file: its schema (the listener,
// defaults every route inherits, and routes with their endpoints, settings or
// redirect), reading it strictly (an unknown key, a wrong type or a bad value
// is a problem naming the file, the line and the key, and what is accepted;
// every problem is reported, not only the first), and ${NAME} in a value
// replaced by that environment variable. What the settings do is the engine's.
package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problems are every problem of a file, each a line "FILE:LINE: KEY: what is
// wrong; accepted: ...".
type Problems []string

// Error implements error: the problems, one per line.
func (p Problems) Error() string {
	return strings.Join(p, "\n")
}

// reader is one reading of a file: its name, the key path of each node, and
// the problems found so far.
type reader struct {
	name     string
	getenv   func(string) (string, bool)
	keys     map[position]string
	problems Problems
}

// position is a node's place in the file.
type position struct{ line, column int }

// Load reads the file at path, replacing ${NAME} by getenv's value (os.LookupEnv
// if nil). A file with problems returns them as Problems.
func Load(path string, getenv func(string) (string, bool)) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{fmt.Sprintf("%s: %v", path, err)}
	}
	return Parse(path, data, getenv)
}

// Parse reads data, the file name, as Load does.
func Parse(name string, data []byte, getenv func(string) (string, bool)) (*File, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	r := &reader{name: name, getenv: getenv, keys: map[position]string{}}
	var doc yaml.Node
	decoder := yaml.NewDecoder(bytes.NewReader(data))
	if err := decoder.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{name + ": the file is empty; accepted: a mapping with routes"}
		}
		return nil, Problems{r.syntaxProblem(err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	r.walk(root, reflect.TypeFor[File](), "")
	file := &File{}
	if err := root.Decode(file); err != nil {
		var typeErr *yaml.TypeError
		if !errors.As(err, &typeErr) {
			return nil, Problems{r.syntaxProblem(err)}
		}
		for _, msg := range typeErr.Errors {
			r.problems = append(r.problems, r.valueProblem(msg))
		}
	}
	r.check(root, file)
	if len(r.problems) > 0 {
		return nil, r.problems
	}
	file.Digest = sha256.Sum256(data)
	return file, nil
}

// at adds a problem at node n.
func (r *reader) at(n *yaml.Node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	r.problems = append(r.problems, fmt.Sprintf("%s:%d: %s", r.name, n.Line, msg))
}

// syntaxProblem turns a YAML syntax error ("yaml: line 3: ...") into a
// problem of the file.
func (r *reader) syntaxProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s:%s: %s; accepted: YAML", r.name, m[1], msg[len(m[0]):])
	}
	return fmt.Sprintf("%s: %s; accepted: YAML", r.name, msg)
}

var (
	lineRE      = regexp.MustCompile(`^line (\d+): `)
	lineColRE   = regexp.MustCompile(`^line (\d+) column (\d+): `)
	cannotRE    = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	envRE       = regexp.MustCompile(`\$\{([^}]*)\}`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	acceptedFor = map[string]string{
		"bool": "true or false", "int": "a whole number", "string": "a string",
	}
)

// valueProblem turns a decoding error of a value into a problem naming its
// key: the value types' own ("line L column C: ...") and the decoder's
// ("line L: cannot unmarshal ...").
func (r *reader) valueProblem(msg string) string {
	line, key := "", ""
	if m := lineColRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		c, _ := strconv.Atoi(m[2])
		line, key, msg = m[1], r.keys[position{l, c}], msg[len(m[0]):]
	} else if m := lineRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		line, key, msg = m[1], r.keyOnLine(l), msg[len(m[0]):]
		if c := cannotRE.FindStringSubmatch(msg); c != nil {
			accepted := acceptedFor[strings.TrimPrefix(c[3], "*")]
			if accepted == "" {
				accepted = describe(c[3])
			}
			msg = fmt.Sprintf("%q: accepted: %s", c[2], accepted)
			if c[1] == "map" || c[1] == "seq" {
				msg = fmt.Sprintf("a %s: accepted: %s", map[string]string{"map": "mapping", "seq": "list"}[c[1]], accepted)
			}
		}
	}
	if key != "" {
		msg = key + ": " + msg
	}
	return fmt.Sprintf("%s:%s: %s", r.name, line, msg)
}

// describe says what a Go type of the schema is, for a value of the wrong
// kind.
func describe(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a mapping of its keys"
}

// keyOnLine returns the key path of the value that starts on line, if one does.
func (r *reader) keyOnLine(line int) string {
	best := position{}
	for p := range r.keys {
		if p.line == line && (best.line == 0 || p.column > best.column) {
			best = p
		}
	}
	return r.keys[best]
}

// walk replaces ${NAME} in the scalar values under n, records each value's
// key path, and reports keys that t (a type of the schema) does not have.
func (r *reader) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r.keys[position{n.Line, n.Column}] = path
	switch n.Kind {
	case yaml.ScalarNode:
		r.expand(n, path)
	case yaml.MappingNode:
		fields, structured := map[string]reflect.Type{}, t.Kind() == reflect.Struct
		if structured {
			fields = yamlFields(t)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			keyNode, value := n.Content[i], n.Content[i+1]
			key := join(path, keyNode.Value)
			if !structured {
				if t.Kind() == reflect.Map {
					r.walk(value, t.Elem(), key)
				}
				continue
			}
			fieldType, ok := fields[keyNode.Value]
			if !ok {
				names := slices.Sorted(maps.Keys(fields))
				r.at(keyNode, key, "unknown key; accepted: %s", strings.Join(names, ", "))
				continue
			}
			r.walk(value, fieldType, key)
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice {
			for i, item := range n.Content {
				r.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
}

// expand replaces ${NAME} in scalar n by NAME's value in the environment; an
// unset NAME is a problem. A plain (unquoted) value is typed afresh after, so
// that weight: ${WEIGHT} is a number, unless it came to nothing or null,
// which stays a string.
func (r *reader) expand(n *yaml.Node, key string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	n.Value = envRE.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := ref[2 : len(ref)-1]
		if !envNameRE.MatchString(name) {
			r.at(n, key, "%s: accepted: ${NAME} with NAME letters, digits and _", ref)
			return ref
		}
		value, ok := r.getenv(name)
		if !ok {
			r.at(n, key, "%s: %s is not set in the environment", ref, name)
		}
		return value
	})
	switch n.Value {
	case "", "~", "null", "Null", "NULL":
		// Still the string it was: a variable never unsets a key.
	default:
		if n.Style == 0 {
			n.Tag = ""
		}
	}
}

// yamlFields returns the fields of struct t by their YAML key, those of
// inline structs included.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, options, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if options == "inline" {
			for k, v := range yamlFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	return fields
}

// join is a key path: parent.key.
func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
