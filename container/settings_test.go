package container

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// testSettings is a family's settings as a package would declare them.
type testSettings struct {
	Level int
	Name  string
}

func (s *testSettings) Flags(fs *pflag.FlagSet) {
	fs.IntVar(&s.Level, "test_level", s.Level, "a level")
	fs.StringVar(&s.Name, "test_name", s.Name, "a name")
}

func (s *testSettings) Validate() error {
	if s.Level < 0 {
		return errors.New("--test_level: negative")
	}
	return nil
}

// unregistered is a family no package registered.
type unregistered struct{ On bool }

func (*unregistered) Flags(*pflag.FlagSet) {}
func (*unregistered) Validate() error      { return nil }

func init() {
	RegisterSettings(func() Settings { return &testSettings{Level: 3, Name: "def"} })
}

func TestSettings(t *testing.T) {
	// Bound to flags, the parsed values reach the reader, typed.
	s := NewSettings()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	s.Flags(fs)
	if err := fs.Parse([]string{"--test_level=7"}); err != nil {
		t.Fatal(err)
	}
	o := Options{Settings: s}
	if got := SettingsOf[*testSettings](o); got.Level != 7 || got.Name != "def" {
		t.Errorf("parsed settings %+v, want level 7 and the default name", *got)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := fs.Parse([]string{"--test_level=-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--test_level") {
		t.Errorf("Validate of a negative level: %v, want an error naming the flag", err)
	}

	// Options carrying no settings give the registered defaults, each
	// reader its own copy.
	a, b := SettingsOf[*testSettings](Options{}), SettingsOf[*testSettings](Options{})
	if *a != (testSettings{Level: 3, Name: "def"}) {
		t.Errorf("defaults %+v", *a)
	}
	a.Level = 9
	if b.Level != 3 {
		t.Error("two readers of the defaults share one value")
	}

	// With replaces one family in a copy and leaves the original alone.
	w := s.With(&testSettings{Level: 1})
	if SettingsOf[*testSettings](Options{Settings: w}).Level != 1 || SettingsOf[*testSettings](o).Level != -1 {
		t.Error("With changed the set it was called on, or did not replace the value")
	}
	// A zero set With one family holds just that one.
	if z := (SettingsSet{}).With(&testSettings{Level: 2}); SettingsOf[*testSettings](Options{Settings: z}).Level != 2 {
		t.Error("With on a zero set lost the value")
	}

	// A family nobody registered reads as its zero value.
	if u := SettingsOf[*unregistered](Options{Settings: s}); u == nil || u.On {
		t.Errorf("unregistered settings %v, want a zero value", u)
	}
}
