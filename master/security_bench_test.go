package master_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
)

// securedMaster is a master with a framework subscribed and a fake agent
// connected, either with nothing on or with every framework and agent
// authenticating (HTTP basic) over TLS, the agents with their own
// certificates (mutual TLS).
type securedMaster struct {
	name    string
	fw      *httpapi.Client
	fwID    string
	agent   *mastertest.FakeAgent
	updates atomic.Int64 // UPDATE events the framework received
}

func startSecuredMaster(b *testing.B, secure bool) *securedMaster {
	b.Helper()
	sm := &securedMaster{name: "plain"}
	cfg := master.Config{HeartbeatInterval: time.Minute, AllocationInterval: time.Second, Log: quietLog()}
	var fwHeader, agentHeader http.Header
	var fwTLS, agentTLS *tls.Config
	if secure {
		sm.name = "secure"
		ca := testsupport.NewCA(b, "bench")
		cert, key := ca.Issue(b, "master")
		agentCert, agentKey := ca.Issue(b, "agent")
		creds, err := auth.ParseCredentials([]byte(`{"credentials":[{"principal":"fw","secret":"fw-secret"},{"principal":"agent","secret":"agent-secret"}]}`))
		if err != nil {
			b.Fatal(err)
		}
		cfg.FrameworkCredentials, cfg.AgentCredentials = creds, creds
		if cfg.TLS, err = (tlsconfig.Files{CertFile: cert, KeyFile: key, CAFile: ca.CAFile}).Server(); err != nil {
			b.Fatal(err)
		}
		fwHeader, agentHeader = auth.BasicHeader("fw", "fw-secret"), auth.BasicHeader("agent", "agent-secret")
		if fwTLS, err = (tlsconfig.Files{CAFile: ca.CAFile}).Client(); err != nil {
			b.Fatal(err)
		}
		if agentTLS, err = (tlsconfig.Files{CAFile: ca.CAFile, CertFile: agentCert, KeyFile: agentKey}).Client(); err != nil {
			b.Fatal(err)
		}
	}
	addr, _ := mastertest.Start(b, cfg)
	sm.agent = mastertest.ConnectAgent(b, addr, mastertest.AgentOptions{Resources: agentResources, Header: agentHeader, TLS: agentTLS})
	scheme := "http"
	if secure {
		scheme = "https"
	}
	tr := tlsconfig.Transport(fwTLS)
	tr.MaxIdleConnsPerHost = 32
	b.Cleanup(tr.CloseIdleConnections)
	sm.fw = &httpapi.Client{URL: scheme + "://" + addr + "/api/v1/scheduler", Codec: codec.JSON, Header: fwHeader,
		HTTP: &http.Client{Transport: tr}}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := sm.fw.Subscribe(ctx, &scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{
		FrameworkInfo: &mesos.FrameworkInfo{User: proto.String("bench"), Name: proto.String("bench"), Principal: proto.String("fw")},
	}}, time.Minute)
	if err != nil {
		cancel()
		b.Fatalf("%s: SUBSCRIBE: %v", sm.name, err)
	}
	ev := &scheduler.Event{}
	if err := sub.Next(ev); err != nil || ev.GetType() != scheduler.Event_SUBSCRIBED {
		cancel()
		b.Fatalf("%s: first event %v, %v", sm.name, ev.GetType(), err)
	}
	sm.fwID = ev.GetSubscribed().GetFrameworkId().GetValue()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			ev := &scheduler.Event{}
			if sub.Next(ev) != nil {
				return
			}
			if ev.GetType() == scheduler.Event_UPDATE {
				sm.updates.Add(1)
			}
		}
	}()
	b.Cleanup(func() { cancel(); _ = sub.Close(); <-drained })
	return sm
}

// parallel runs n calls of call on workers goroutines and returns the
// calls per second.
func parallel(b *testing.B, n, workers int, call func(i int) error, done func() bool) float64 {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := call(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	for deadline := time.Now().Add(time.Minute); !done() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if !done() {
		b.Fatal("not everything arrived within a minute")
	}
	return float64(n) / elapsed.Seconds()
}

// BenchmarkSecurity measures what authentication and TLS cost: scheduler
// API calls per second (RECONCILE, 8 callers) and agent status updates
// per second through the master to the framework (16 in flight, as the
// agent's maxMasterCalls), each on a master with nothing on and on one
// with HTTP basic authentication of frameworks and agents over TLS (mutual
// for the agent). The setups alternate round by round in one run; the
// figures are medians and the ratios secure/plain (goal ≥ 0.8).
func BenchmarkSecurity(b *testing.B) {
	const rounds, calls, updates = 5, 3000, 3000
	setups := []*securedMaster{startSecuredMaster(b, false), startSecuredMaster(b, true)}
	callRate := map[string][]float64{}
	updateRate := map[string][]float64{}
	for range b.N {
		for r := range rounds {
			for _, sm := range setups {
				reconcile := &scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), FrameworkId: &mesos.FrameworkID{Value: proto.String(sm.fwID)},
					Reconcile: &scheduler.Call_Reconcile{}}
				callRate[sm.name] = append(callRate[sm.name], parallel(b, calls, 8, func(int) error {
					return sm.fw.Call(context.Background(), reconcile, nil)
				}, func() bool { return true }))
				base := sm.updates.Load()
				updateRate[sm.name] = append(updateRate[sm.name], parallel(b, updates, 16, func(i int) error {
					ti := &mesos.TaskInfo{TaskId: &mesos.TaskID{Value: proto.String(fmt.Sprintf("r%d-%d", r, i))}}
					return sm.agent.TryUpdate(sm.fwID, ti, mesos.TaskState_TASK_RUNNING)
				}, func() bool { return sm.updates.Load()-base >= updates }))
			}
		}
	}
	median := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	for _, m := range []struct {
		name  string
		rates map[string][]float64
	}{{"sched_calls", callRate}, {"agent_updates", updateRate}} {
		plain, secure := median(m.rates["plain"]), median(m.rates["secure"])
		b.ReportMetric(plain, m.name+"/s_plain")
		b.ReportMetric(secure, m.name+"/s_auth+tls")
		b.ReportMetric(secure/plain, m.name+"_ratio")
	}
}
