package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/corral/corral/internal/version"
)

// WriteJSON answers 200 with v as JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		Error(w, http.StatusInternalServerError, "encoding JSON: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// Health answers /health as Mesos does: 200 with an empty body.
func Health(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

// HealthWarning is Health that carries warning, when there is one, in a
// Warning header (code 199, "miscellaneous"): a health check that shows
// headers learns that the server is open to anyone, and the body stays
// Mesos' empty one.
func HealthWarning(warning string) http.HandlerFunc {
	if warning == "" {
		return Health
	}
	value := `199 - "` + strings.ReplaceAll(warning, `"`, `'`) + `"`
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Warning", value)
		w.WriteHeader(http.StatusOK)
	}
}

// Version answers /version in Mesos' shape; "version" is the Mesos API level
// Corral follows, since clients compare it with Mesos releases.
func Version(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, map[string]any{
		"version":        version.MesosCompat,
		"corral_version": version.Version,
		"build_date":     "",
		"build_time":     float64(startTime.Unix()),
		"build_user":     "",
		"git_sha":        "",
	})
}

var startTime = time.Now()

// Flags answers /flags: {"flags": {name: value}}.
func Flags(flags map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, map[string]any{"flags": flags})
	}
}
