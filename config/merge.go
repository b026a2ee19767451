package config

import "reflect"

// Over returns s with every setting it leaves unset taken from base: a block
// (hedge, eject, health, session) key by key.
func (s Settings) Over(base Settings) Settings {
	over(reflect.ValueOf(&s).Elem(), reflect.ValueOf(base))
	return s
}

// over sets each nil pointer field of struct dst to src's; a field that
// points to a struct in both is merged in turn, in a copy.
func over(dst, src reflect.Value) {
	for i := range dst.NumField() {
		d, b := dst.Field(i), src.Field(i)
		switch {
		case d.Kind() != reflect.Pointer || b.IsNil():
		case d.IsNil():
			d.Set(b)
		case d.Elem().Kind() == reflect.Struct && !isValue(d.Type()):
			merged := reflect.New(d.Elem().Type())
			merged.Elem().Set(d.Elem())
			over(merged.Elem(), b.Elem())
			d.Set(merged)
		}
	}
}

// isValue reports whether t, a pointer type, points to a single value of the
// schema (a Text) rather than to a block of settings.
func isValue(t reflect.Type) bool {
	_, ok := reflect.New(t.Elem()).Interface().(interface{ isValue() })
	return ok
}
