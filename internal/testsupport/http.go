package testsupport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return FreePorts(tb, 1)[0]
}

// FreePorts returns n different free loopback ports. The listeners are all
// held until every port is chosen: two FreePort calls in a row may get the
// same port back, as the kernel hands out a just-closed one again.
func FreePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// GetJSON decodes the JSON answer of a GET of url (10 s at most); an
// answer other than 200 is an error.
func GetJSON(url string, v any) error { return GetJSONWith(http.DefaultClient, url, v) }

// GetJSONWith is GetJSON through hc (a TLS client, say).
func GetJSONWith(hc *http.Client, url string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// AsPrincipal is a client that sends principal's HTTP basic credentials
// with every request.
func AsPrincipal(principal, secret string) *http.Client {
	return &http.Client{Transport: basicAuth{principal, secret}, Timeout: 10 * time.Second}
}

type basicAuth struct{ principal, secret string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.principal, b.secret)
	return http.DefaultTransport.RoundTrip(r)
}

// Get is the status and (at most 1 MiB of the) body of a GET of url
// through hc.
func Get(tb testing.TB, hc *http.Client, url string) (int, string) {
	tb.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
