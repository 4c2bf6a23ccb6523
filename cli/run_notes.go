package cli

// What corral run tells a user who would otherwise wait in silence or read
// a bare exit status: what the cluster offers while nothing fits, that the
// master cannot be reached, and the end of a failed task's stderr.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
)

// Bounds of corral run's notes.
var (
	// masterProbeInterval is how often an unsubscribed corral run checks
	// that the master's address answers at all.
	masterProbeInterval = time.Second
	// unreachableAfter failed probes in a row make the master unreachable
	// for the user: one refused connection may be a master starting up.
	unreachableAfter = 2
	// stderrTailLines and stderrTailBytes bound what is printed of a failed
	// task's stderr (the bytes bound the one /files/read it takes).
	stderrTailLines = 10
	stderrTailBytes = int64(8 << 10)
)

// httpTimeout bounds each request corral run makes besides the scheduler
// API's (agent and master state, /files/read).
const httpTimeout = 5 * time.Second

// noteOffers records what the agents offered that did not fit the task and,
// when that changed since the last note, says so: a task asking for more
// than the cluster has would otherwise wait for ever without a word. Only
// the resources the task asks for are shown, so that the note changes when
// they do.
func (s *runScheduler) noteOffers(offers []*mesos.Offer) {
	batch := map[string]resources.Resources{}
	hosts := map[string]string{}
	for _, o := range offers {
		have, err := resources.New(o.GetResources())
		if err != nil {
			continue
		}
		id := o.GetAgentId().GetValue()
		batch[id] = batch[id].Plus(have)
		hosts[id] = o.GetHostname()
	}
	if len(batch) == 0 {
		return
	}
	s.mu.Lock()
	if s.offered == nil {
		s.offered = map[string]string{}
	}
	for id, have := range batch {
		host := hosts[id]
		if host == "" {
			host = id
		}
		s.offered[id] = host + ": " + relevant(have, s.opts.want)
	}
	summary := offersSummary(s.offered)
	changed := summary != s.offersNote
	s.offersNote = summary
	s.mu.Unlock()
	if changed {
		fmt.Fprintf(s.errOut, "Waiting for an offer with %s; the cluster offers %s%s\n", s.opts.want, summary, s.giveUpHint())
	}
}

// offersSummary lists each agent's offer, sorted so that the same offers
// always read the same.
func offersSummary(byAgent map[string]string) string {
	lines := make([]string, 0, len(byAgent))
	for _, l := range byAgent {
		lines = append(lines, l)
	}
	slices.Sort(lines)
	return strings.Join(lines, "; ")
}

// relevant renders the part of have named in want, and names what want asks
// for that have lacks entirely ("cpus:2;mem:512, no gpus").
func relevant(have, want resources.Resources) string {
	var names []string
	for _, r := range want {
		if !slices.Contains(names, r.GetName()) {
			names = append(names, r.GetName())
		}
	}
	var part resources.Resources
	var missing []string
	for _, n := range names {
		found := false
		for _, r := range have {
			if r.GetName() == n {
				part = append(part, r)
				found = true
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	out := part.String()
	if len(missing) > 0 {
		if out != "" {
			out += ", "
		}
		out += "no " + strings.Join(missing, ", no ")
	}
	return out
}

// giveUpHint says how the wait ends.
func (s *runScheduler) giveUpHint() string {
	if s.opts.timeout > 0 {
		return fmt.Sprintf("; still waiting (up to --timeout %v)", s.opts.timeout)
	}
	return "; still waiting (Ctrl-C or --timeout gives up)"
}

// watchMaster tells the user once, plainly, that the master cannot be
// reached while corral run has no subscription, rather than leaving it to
// the driver's retry warnings; once it is reached again it says that too,
// and a later outage is reported afresh. A master that answers but refuses
// is left to the driver's messages: the address is right there.
func (s *runScheduler) watchMaster(ctx context.Context) {
	addr := masterAddr(s.opts.master)
	if addr == "" {
		return
	}
	t := time.NewTicker(masterProbeInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		subscribed, noted := s.subscribed, s.unreachable
		if subscribed && noted {
			s.unreachable = false
		}
		s.mu.Unlock()
		if subscribed {
			if noted {
				fmt.Fprintf(s.errOut, "Reached the master at %s again\n", s.opts.master)
			}
			failures = 0
			continue
		}
		err := probe(ctx, addr, s.opts.tls)
		if err == nil {
			failures = 0
			continue
		}
		if failures++; failures != unreachableAfter || noted {
			continue
		}
		s.mu.Lock()
		s.unreachable, s.unreachableErr = true, err
		s.mu.Unlock()
		fmt.Fprintf(s.errOut, "The master at %s is unreachable (%v)%s\n", s.opts.master, err, strings.Replace(s.giveUpHint(), "waiting", "retrying", 1))
	}
}

// masterAddr is the host:port that --master names ("" if it names none).
func masterAddr(master string) string {
	if !strings.Contains(master, "://") {
		return master
	}
	u, err := url.Parse(master)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// probe checks that something listens at addr.
func probe(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	d := &net.Dialer{Timeout: 2 * time.Second}
	var c net.Conn
	var err error
	if tlsCfg != nil {
		// The handshake too: a certificate that does not verify leaves
		// the master as unreachable as a closed port, and says why.
		c, err = (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return op.Err // "connect: connection refused", without the repeated address
		}
		return err
	}
	return c.Close()
}

// quietDriver reports whether the driver's warnings should be dropped: the
// user has been told the master is unreachable, and each retry's warning
// would only repeat it.
func (s *runScheduler) quietDriver() bool {
	if s.opts.verbose {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unreachable
}

// quietHandler drops records below ERROR while quiet says so.
type quietHandler struct {
	h     slog.Handler
	quiet func() bool
}

func (q *quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l < slog.LevelError && q.quiet() {
		return false
	}
	return q.h.Enabled(ctx, l)
}

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error { return q.h.Handle(ctx, r) }

func (q *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &quietHandler{h: q.h.WithAttrs(as), quiet: q.quiet}
}

func (q *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{h: q.h.WithGroup(name), quiet: q.quiet}
}

// printStderrTail prints the last lines of the task's stderr, read through
// the agent's /files/read (Mesos' API) so that it works wherever corral run
// runs: a failed task's cause (`sh: no-such-command: not found`) is there,
// not in its status.
func (s *runScheduler) printStderrTail(ctx context.Context, frameworkID string, status *mesos.TaskStatus) {
	s.mu.Lock()
	dir := s.sandboxDir
	s.mu.Unlock()
	agent := s.agentBase(ctx)
	if agent == "" {
		s.log.Warn("no address of the task's agent: its stderr cannot be shown")
		return
	}
	if dir == "" {
		dir = s.lookupSandbox(ctx, frameworkID, status)
	}
	if dir == "" {
		s.log.Warn("the task's sandbox was not found: its stderr cannot be shown")
		return
	}
	path := strings.TrimRight(dir, "/") + "/stderr"
	lines, err := readTail(ctx, s.opts.http, agent, path, stderrTailBytes, stderrTailLines)
	if err != nil {
		s.log.Warn("reading the task's stderr", "agent", agent, "path", path, "err", err)
		return
	}
	if len(lines) == 0 {
		fmt.Fprintln(s.errOut, "The task's stderr is empty")
		return
	}
	what := "line"
	if len(lines) > 1 {
		what = fmt.Sprintf("%d lines", len(lines))
	}
	fmt.Fprintf(s.errOut, "Last %s of the task's stderr (through %s/files/read):\n", what, agent)
	for _, l := range lines {
		fmt.Fprintln(s.errOut, "  "+l)
	}
}

// readTail reads up to maxBytes from the end of path through base's
// /files/read and returns its last maxLines whole lines.
func readTail(ctx context.Context, hc *http.Client, base, path string, maxBytes int64, maxLines int) ([]string, error) {
	size, _, err := filesRead(ctx, hc, base, path, -1, 0)
	if err != nil {
		return nil, err
	}
	offset := max(0, size-maxBytes)
	_, data, err := filesRead(ctx, hc, base, path, offset, maxBytes)
	if err != nil {
		return nil, err
	}
	return tailLines(data, offset > 0, maxLines), nil
}

// tailLines returns the last n lines of data; partial says data starts
// mid-file, so its first line may be cut and is dropped.
func tailLines(data string, partial bool, n int) []string {
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	if partial && len(lines) > 0 {
		lines = lines[1:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return lines
}

// filesRead is one GET of Mesos' /files/read: offset -1 asks for the
// file's size only.
func filesRead(ctx context.Context, hc *http.Client, base, path string, offset, length int64) (int64, string, error) {
	q := url.Values{"path": {path}, "offset": {strconv.FormatInt(offset, 10)}}
	if offset >= 0 {
		q.Set("length", strconv.FormatInt(length, 10))
	}
	var out struct {
		Data   string `json:"data"`
		Offset int64  `json:"offset"`
	}
	if err := getJSON(ctx, hc, base+"/files/read?"+q.Encode(), 1<<20, &out); err != nil {
		return 0, "", err
	}
	return out.Offset, out.Data, nil
}

// getJSON GETs u and decodes at most limit bytes of its JSON answer.
func getJSON(ctx context.Context, hc *http.Client, u string, limit int64, v any) error {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v); err != nil {
		return fmt.Errorf("decoding %s: %w", u, err)
	}
	return nil
}

// agentBase is the task's agent as scheme://host:port: from the URL its
// offer carried, else from the master's /state (slaves[].pid, Mesos'
// "slave(1)@ip:port", or hostname and port), so that an agent is found
// even when its offer said nothing of its address.
func (s *runScheduler) agentBase(ctx context.Context) string {
	s.mu.Lock()
	u, agentID := s.agentURL, s.agentID.GetValue()
	s.mu.Unlock()
	addr := u.GetAddress()
	host := addr.GetIp()
	if host == "" {
		host = addr.GetHostname()
	}
	if host != "" && addr.GetPort() != 0 {
		scheme := u.GetScheme()
		if scheme == "" {
			scheme = "http"
		}
		return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(addr.GetPort())))
	}
	if agentID == "" {
		return ""
	}
	base := s.opts.master
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	mu, err := url.Parse(base)
	if err != nil {
		return ""
	}
	var st struct {
		Slaves []struct {
			ID       string `json:"id"`
			PID      string `json:"pid"`
			Hostname string `json:"hostname"`
			Port     int    `json:"port"`
		} `json:"slaves"`
	}
	if err := getJSON(ctx, s.opts.http, mu.Scheme+"://"+mu.Host+"/state", 64<<20, &st); err != nil {
		s.log.Warn("looking up the task's agent in the master's state", "err", err)
		return ""
	}
	for _, a := range st.Slaves {
		if a.ID != agentID {
			continue
		}
		// The agents of a TLS master serve TLS too (Mesos' libprocess
		// speaks one scheme throughout).
		if _, hp, ok := strings.Cut(a.PID, "@"); ok && hp != "" {
			return mu.Scheme + "://" + hp
		}
		if a.Hostname != "" && a.Port != 0 {
			return mu.Scheme + "://" + net.JoinHostPort(a.Hostname, strconv.Itoa(a.Port))
		}
	}
	return ""
}
