// Package auth is Mesos' authentication vocabulary: the credentials file
// (--credentials, --http_credentials) and HTTP basic authentication
// against it.
package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Credentials are secrets by principal.
type Credentials map[string]string

// LoadCredentials reads a credentials file in either of Mesos' forms: JSON,
// {"credentials": [{"principal": "...", "secret": "..."}]}, or text, one
// "principal secret" pair per line. The path may be given as file://path.
func LoadCredentials(path string) (Credentials, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	creds, err := ParseCredentials(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return creds, nil
}

// LoadRequired loads the credentials file that a flag turning
// authentication on needs: nil when on is false, else the file at path;
// errors name the flags (flag, fileFlag).
func LoadRequired(on bool, flag, fileFlag, path string) (Credentials, error) {
	if !on {
		return nil, nil
	}
	if path == "" {
		return nil, fmt.Errorf("%s needs %s: the principals to authenticate as", flag, fileFlag)
	}
	creds, err := LoadCredentials(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fileFlag, err)
	}
	return creds, nil
}

// ParseCredentials parses a credentials file's contents (LoadCredentials).
func ParseCredentials(b []byte) (Credentials, error) {
	creds := Credentials{}
	add := func(principal, secret string) error {
		switch {
		case principal == "":
			return errors.New("a credential without a principal")
		case secret == "":
			return fmt.Errorf("principal %q has no secret", principal)
		case creds[principal] != "":
			return fmt.Errorf("principal %q is given twice", principal)
		}
		creds[principal] = secret
		return nil
	}
	if text := strings.TrimSpace(string(b)); strings.HasPrefix(text, "{") {
		var file struct {
			Credentials []struct {
				Principal string `json:"principal"`
				Secret    string `json:"secret"`
			} `json:"credentials"`
		}
		if err := json.Unmarshal(b, &file); err != nil {
			return nil, fmt.Errorf("parsing the credentials: %w", err)
		}
		for _, c := range file.Credentials {
			if err := add(c.Principal, c.Secret); err != nil {
				return nil, err
			}
		}
	} else {
		for i, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: want \"principal secret\"", i+1)
			}
			if err := add(f[0], f[1]); err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
		}
	}
	if len(creds) == 0 {
		return nil, errors.New("no credentials")
	}
	return creds, nil
}

// Credential is one principal and its secret: what a client (an agent,
// --credential) authenticates with.
type Credential struct {
	Principal string `json:"principal"`
	Secret    string `json:"secret"`
}

// LoadCredential reads a file of one credential in Mesos' forms: JSON,
// {"principal": "...", "secret": "..."}, or the text "principal secret".
// The path may be given as file://path.
func LoadCredential(path string) (Credential, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return Credential{}, err
	}
	var c Credential
	if text := strings.TrimSpace(string(b)); strings.HasPrefix(text, "{") {
		if err := json.Unmarshal(b, &c); err != nil {
			return Credential{}, fmt.Errorf("%s: parsing the credential: %w", path, err)
		}
	} else if f := strings.Fields(text); len(f) == 2 {
		c = Credential{Principal: f[0], Secret: f[1]}
	} else {
		return Credential{}, fmt.Errorf("%s: want \"principal secret\" or JSON", path)
	}
	if c.Principal == "" || c.Secret == "" {
		return Credential{}, fmt.Errorf("%s: the credential needs a principal and a secret", path)
	}
	return c, nil
}

// Header is the header that authenticates a request with c.
func (c Credential) Header() http.Header { return BasicHeader(c.Principal, c.Secret) }

// Authenticate returns the principal a request authenticated as with HTTP
// basic authentication, and whether it did. Secrets are compared in
// constant time.
func (c Credentials) Authenticate(r *http.Request) (string, bool) {
	principal, secret, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	want, known := c[principal]
	match := subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1
	if !known || !match {
		return "", false
	}
	return principal, true
}

// BasicHeader is the header that authenticates a request as principal with
// HTTP basic authentication.
func BasicHeader(principal, secret string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(principal+":"+secret))}}
}

// Unauthorized answers a request that did not authenticate, as Mesos'
// basic authenticator does: 401 with the realm to authenticate in.
func Unauthorized(w http.ResponseWriter, realm string) { Challenge(w, "Basic", realm) }

// Challenge answers 401 asking for scheme's credentials (Basic, or Bearer
// for tokens) in realm.
func Challenge(w http.ResponseWriter, scheme, realm string) {
	w.Header().Set("WWW-Authenticate", scheme+` realm="`+realm+`"`)
	http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
}

// ReadSecretFile reads a file of credentials or a key, named as Mesos'
// flags name them: a path, or file://path.
func ReadSecretFile(path string) ([]byte, error) {
	return os.ReadFile(strings.TrimPrefix(path, "file://"))
}

// Require serves h only to requests that authenticate against c in realm;
// with no credentials (nil) it is h.
func Require(c Credentials, realm string, h http.HandlerFunc) http.HandlerFunc {
	if c == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		principal, ok := c.Authenticate(r)
		if !ok {
			Unauthorized(w, realm)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal)))
	}
}

type principalKey struct{}

// PrincipalOf is the principal a request served through Require
// authenticated as; "" when it did not authenticate (no credentials
// configured).
func PrincipalOf(r *http.Request) string {
	p, _ := r.Context().Value(principalKey{}).(string)
	return p
}
