package container

import (
	"errors"
	"reflect"
	"sort"
	"sync"

	"github.com/spf13/pflag"
)

// Settings are one launcher's or isolator family's agent flags as a typed
// struct, declared by the package that reads them (RegisterSettings). The
// agent binds every registered Settings to its flag set and hands the parsed
// values to launchers and isolators in Options, so a setting cannot be read
// by a package and never passed by the agent: there is no string map in
// between.
type Settings interface {
	// Flags declares the settings' flags on fs, bound to the receiver's
	// fields, their current values being the defaults.
	Flags(fs *pflag.FlagSet)
	// Validate checks the values as parsed; an error names the flag.
	Validate() error
}

var (
	settingsMu sync.RWMutex
	// settingsDefaults makes a Settings at its defaults, by its type.
	settingsDefaults = map[reflect.Type]func() Settings{}
)

// RegisterSettings declares a package's Settings: defaults returns a new
// value at the defaults each time. Packages call it from init.
func RegisterSettings(defaults func() Settings) {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	settingsDefaults[reflect.TypeOf(defaults())] = defaults
}

// SettingsSet holds one value of each Settings type.
type SettingsSet struct {
	m map[reflect.Type]Settings
}

// NewSettings returns every registered Settings at its defaults: what the
// agent binds to its flags.
func NewSettings() SettingsSet {
	settingsMu.RLock()
	defer settingsMu.RUnlock()
	s := SettingsSet{m: make(map[reflect.Type]Settings, len(settingsDefaults))}
	for t, defaults := range settingsDefaults {
		s.m[t] = defaults()
	}
	return s
}

// With returns s with v in place of its value of v's type; s itself is not
// changed, so a launcher setup step can adapt its copy of the options.
func (s SettingsSet) With(v ...Settings) SettingsSet {
	out := SettingsSet{m: make(map[reflect.Type]Settings, len(s.m)+len(v))}
	for t, x := range s.m {
		out.m[t] = x
	}
	for _, x := range v {
		out.m[reflect.TypeOf(x)] = x
	}
	return out
}

// sorted is s's values in a fixed order (by type name), so that flags and
// errors come out the same way every time.
func (s SettingsSet) sorted() []Settings {
	types := make([]reflect.Type, 0, len(s.m))
	for t := range s.m {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i].String() < types[j].String() })
	out := make([]Settings, len(types))
	for i, t := range types {
		out[i] = s.m[t]
	}
	return out
}

// Flags declares every settings' flags on fs.
func (s SettingsSet) Flags(fs *pflag.FlagSet) {
	for _, x := range s.sorted() {
		x.Flags(fs)
	}
}

// Validate checks every settings' values.
func (s SettingsSet) Validate() error {
	var errs []error
	for _, x := range s.sorted() {
		if err := x.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SettingsOf returns o's settings of type T, or T's registered defaults
// when o carries none (a launcher or isolator built by a test, or by a
// program that binds no flags). T is a pointer type; the value returned is
// the caller's own copy only when it came from the defaults, so readers
// must not change it.
func SettingsOf[T Settings](o Options) T {
	t := reflect.TypeFor[T]()
	if v, ok := o.Settings.m[t]; ok {
		return v.(T)
	}
	settingsMu.RLock()
	defaults := settingsDefaults[t]
	settingsMu.RUnlock()
	if defaults != nil {
		return defaults().(T)
	}
	var zero T
	if t.Kind() == reflect.Pointer {
		// Not registered: a zero value of what T points to.
		return reflect.New(t.Elem()).Interface().(T)
	}
	return zero
}
