package tlsconfig

import "fmt"

// Mesos' names of the libprocess TLS settings, which its executor library
// (and Corral's) reads from the environment.
const (
	EnvEnabled    = "LIBPROCESS_SSL_ENABLED"
	EnvCAFile     = "LIBPROCESS_SSL_CA_FILE"
	EnvCertFile   = "LIBPROCESS_SSL_CERT_FILE"
	EnvKeyFile    = "LIBPROCESS_SSL_KEY_FILE"
	EnvVerifyCert = "LIBPROCESS_SSL_VERIFY_CERT"
)

// ExecutorEnv is what an executor of an agent serving with f needs to
// reach it: TLS on, and the authority that signs the agent's certificate
// (a Mesos executor verifies it with VERIFY_CERT). Never the agent's own
// certificate and key: a task could read them and pass for the agent. The
// executor API does not need a client certificate (executors prove who
// they are with their token, --authenticate_http_executors), but
// libprocess insists on a key of its own: certFile and keyFile, when
// given, are a pair for executors alone.
func (f Files) ExecutorEnv(certFile, keyFile string) []string {
	if !f.Serving() {
		return nil
	}
	env := []string{EnvEnabled + "=true", EnvVerifyCert + "=true"}
	if f.CAFile != "" {
		env = append(env, EnvCAFile+"="+f.CAFile)
	}
	if certFile != "" {
		env = append(env, EnvCertFile+"="+certFile, EnvKeyFile+"="+keyFile)
	}
	return env
}

// FromEnv reads the LIBPROCESS_SSL_* settings an executor was given (the
// zero Files when TLS is off). Corral's clients verify the server's
// certificate whatever LIBPROCESS_SSL_VERIFY_CERT says.
func FromEnv(lookup func(string) (string, bool)) (Files, error) {
	switch v, _ := lookup(EnvEnabled); v {
	case "", "0", "false":
		return Files{}, nil
	case "1", "true":
	default:
		return Files{}, fmt.Errorf("%s: want true or false, got %q", EnvEnabled, v)
	}
	f := Files{On: true}
	f.CAFile, _ = lookup(EnvCAFile)
	f.CertFile, _ = lookup(EnvCertFile)
	f.KeyFile, _ = lookup(EnvKeyFile)
	if (f.CertFile == "") != (f.KeyFile == "") {
		return Files{}, fmt.Errorf("%s and %s come together", EnvCertFile, EnvKeyFile)
	}
	return f, nil
}
