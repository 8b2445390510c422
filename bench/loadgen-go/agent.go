package main

// One simulated agent, as bench/loadgen.ts's SimAgent: its own certificate and its own HTTP/2
// connection over mutual TLS (a transport of its own: nothing shared with the other agents), the
// held long-poll, a heartbeat every heartbeatMs from a jittered start, results reported with
// retries in 'ack' mode, and the runtime's backoff and Retry-After (retry.go).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// honourRetryAfter: BENCH_AGENT_RETRY_AFTER=0 makes the agents ignore Retry-After, as loadgen.ts.
var honourRetryAfter = true

// resultNext: a result claims the next command in the same request (result?next=N, as the
// runtime); BENCH_AGENT_RESULT_NEXT=0 gives the result and then a poll, as loadgen.ts.
var resultNext = true

// extraHeaders: BENCH_AGENT_EXTRA_HEADERS=<n> adds n headers (x-bench-pad-<i>) to every request. Each
// header value a Node HTTP/2 server receives becomes one external string (node_http_common.h); the
// knob measures what they cost the server's major GC (docs/performance.md).
var extraHeaders [][2]string

type response struct {
	status        int
	body          []byte
	retryAfterMs  float64
	hasRetryAfter bool
}

type agent struct {
	idx        int
	base       string
	tr         *http.Transport
	healthy    atomic.Bool
	connected  atomic.Bool
	hbInFlight atomic.Bool
	// gate: one request at a time gets the agent's connection (Http2Client.connect: one session,
	// every request a stream on it); without it the transport dials for the first heartbeat and the
	// first poll at once, a second handshake the real agent does not make.
	gate  sync.Mutex
	beats int // only the heartbeat in flight touches it
	wake  chan struct{}
	// Guarded by the global mu (stats.go): the recovery times since the last mark (-1: none yet) and the Retry-After quiet time.
	recHb, recPoll float64
	quietUntil     time.Time
	// As the runtime: heartbeats failed in a row without a Retry-After, and the time before which
	// none goes (retry.go, heartbeatDelay). Guarded by mu.
	hbFailures  int
	hbNotBefore time.Time
}

func newAgent(idx int, cfg *startMsg, cert tls.Certificate, roots *tlsRoots) *agent {
	a := &agent{idx: idx, base: cfg.URL, wake: make(chan struct{}, 1), recHb: -1, recPoll: -1}
	tlsCfg := &tls.Config{
		RootCAs:            roots.pool,
		ServerName:         roots.serverName,
		Certificates:       []tls.Certificate{cert},
		NextProtos:         []string{"h2"},
		ClientSessionCache: tls.NewLRUClientSessionCache(4), // TLS sessions resumed on reconnect, as Http2Client keeps its session
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+idx%max(1, cfg.LocalAddresses)))}
	dialer := &net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	a.tr = &http.Transport{
		// Dialled here (not by the transport) to count handshakes and resumptions as Http2Client.stats does.
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, tlsCfg)
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			st.tlsConnects.Add(1)
			if c.ConnectionState().DidResume {
				st.tlsResumed.Add(1)
			}
			return c, nil
		},
		ForceAttemptHTTP2:   true,
		Protocols:           protocols,
		DisableCompression:  true, // the Node client sends no accept-encoding
		MaxIdleConnsPerHost: 1,
		// As Http2Client.checkAlive: a connection silent for a while gets a PING, and is dropped when it goes unanswered for 15 s.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
	}
	return a
}

type transportError struct{ code string }

func (e transportError) Error() string { return e.code }

// request: any answer is a response (its status checked by the caller); a failure to get one is a
// transportError coded as loadgen.ts counts them ('timeout', 'transport_error').
func (a *agent) request(method, path string, body any, timeout time.Duration) (response, error) {
	var payload io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		payload = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(rootCtx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, payload)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("content-type", "application/json")
	}
	req.Header.Set("user-agent", "tether-agent")
	for _, h := range extraHeaders {
		req.Header.Set(h[0], h[1])
	}
	var release sync.Once
	a.gate.Lock()
	unlock := func() { release.Do(a.gate.Unlock) }
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { unlock() }}))
	res, err := a.tr.RoundTrip(req)
	unlock()
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		if err == nil {
			r := response{status: res.StatusCode, body: b}
			if res.StatusCode < 200 || res.StatusCode >= 300 {
				if ms, ok := parseRetryAfter(res.Header.Get("retry-after"), time.Now()); ok && honourRetryAfter {
					r.retryAfterMs, r.hasRetryAfter = ms, true
				}
			}
			return r, nil
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return response{}, transportError{"timeout"}
	}
	return response{}, transportError{"transport_error"}
}

func (a *agent) start(cfg *startMsg) {
	if stopped.Load() {
		return
	}
	go a.heartbeat(cfg)
	go func() {
		t := time.NewTicker(time.Duration(cfg.HeartbeatMs) * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-rootCtx.Done():
				return
			case <-t.C:
				go a.heartbeat(cfg)
			}
		}
	}()
	go a.pollLoop(cfg)
}

func (a *agent) heartbeat(cfg *startMsg) {
	mu.Lock()
	quiet := time.Now().Before(a.quietUntil) || time.Now().Before(a.hbNotBefore)
	mu.Unlock()
	if stopped.Load() || quiet || !a.hbInFlight.CompareAndSwap(false, true) {
		return
	}
	defer a.hbInFlight.Store(false)
	t0 := nowMs()
	r, err := a.request("POST", "/v1/agent/heartbeat", heartbeatBody(a.beats), 10*time.Second)
	a.beats++
	if err == nil && r.hasRetryAfter {
		d, _ := retryDelay(1, r.retryAfterMs, true, 1000, 60_000, rand.Float64())
		mu.Lock()
		a.hbFailures = 0 // the control plane answered: it said when, and the backoff starts again
		if until := time.Now().Add(d); until.After(a.quietUntil) {
			a.quietUntil = until
		}
		mu.Unlock()
	}
	if err == nil && r.status != 200 {
		err = fmt.Errorf("http_%d", r.status)
	}
	if err != nil {
		a.healthy.Store(false)
		mu.Lock()
		st.hbErr++
		countLocked(err.Error())
		if !r.hasRetryAfter {
			a.hbFailures++
			a.hbNotBefore = time.Now().Add(heartbeatDelay(a.hbFailures, float64(cfg.HeartbeatMs), 60_000, rand.Float64()))
		}
		mu.Unlock()
		return
	}
	t1 := nowMs()
	a.healthy.Store(true)
	a.connected.Store(true)
	mu.Lock()
	a.hbFailures = 0
	st.hbOk++
	st.hbLat.add(t1 - t0)
	if markAt > 0 && a.recHb < 0 && t0 >= markAt {
		a.recHb = t1 - markAt
	}
	mu.Unlock()
	select { // as the runtime: a heartbeat that gets through ends the poll's backoff
	case a.wake <- struct{}{}:
	default:
	}
}

type pollAnswer struct {
	Command *struct {
		ID      int64  `json:"id"`
		LeaseID string `json:"leaseId"`
	} `json:"command"`
}

// resultAnswer: a result's answer; Next only with ?next=N (what the poll would have answered).
type resultAnswer struct {
	Next *pollAnswer `json:"next"`
}

func (a *agent) pollLoop(cfg *startMsg) {
	attempt := 0
	path := "/v1/agent/poll?wait=" + strconv.Itoa(cfg.PollWaitSeconds)
	// The next command as a result's answer gave it: taken as a poll's answer, no poll sent.
	var given *pollAnswer
	for !stopped.Load() {
		if given != nil {
			ans := given
			given = nil
			if ans.Command != nil {
				mu.Lock()
				st.claims = append(st.claims, stamp{ans.Command.ID, nowMs()})
				mu.Unlock()
				if cfg.Mode == "ack" {
					given = a.report(ans.Command.ID, ans.Command.LeaseID, cfg.PollWaitSeconds)
				}
			}
			continue
		}
		t0 := nowMs()
		// Still held 2 s after it was sent: the control plane has this agent's poll.
		held := time.AfterFunc(2*time.Second, func() {
			mu.Lock()
			if markAt > 0 && a.recPoll < 0 && t0 >= markAt {
				a.recPoll = t0 - markAt
			}
			mu.Unlock()
		})
		r, err := a.request("GET", path, nil, time.Duration(cfg.PollWaitSeconds+15)*time.Second)
		held.Stop()
		if err == nil && r.status != 200 {
			err = fmt.Errorf("http_%d", r.status)
		}
		if err == nil {
			attempt = 0
			a.connected.Store(true)
			var ans pollAnswer
			_ = json.Unmarshal(r.body, &ans)
			mu.Lock()
			st.pollOk++
			if markAt > 0 && a.recPoll < 0 && t0 >= markAt {
				a.recPoll = nowMs() - markAt
			}
			if ans.Command != nil {
				st.claims = append(st.claims, stamp{ans.Command.ID, nowMs()})
			}
			mu.Unlock()
			if ans.Command != nil && cfg.Mode == "ack" {
				given = a.report(ans.Command.ID, ans.Command.LeaseID, cfg.PollWaitSeconds)
			}
			continue
		}
		mu.Lock()
		st.pollErr++
		countLocked(err.Error())
		mu.Unlock()
		attempt++
		d, cause := retryDelay(attempt, r.retryAfterMs, r.hasRetryAfter, 1000, 60_000, rand.Float64())
		if cause == causeRetryAfter {
			mu.Lock()
			st.retryAfterWaits++
			if until := time.Now().Add(d); until.After(a.quietUntil) {
				a.quietUntil = until
			}
			wait := time.Until(a.quietUntil)
			mu.Unlock()
			sleepCtx(wait)
			attempt = 0 // as the runtime: a failure after the wait backs off from the start
			continue
		}
		select { // a wake from before this backoff does not end it
		case <-a.wake:
		default:
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-a.wake:
			t.Stop()
		case <-rootCtx.Done():
			t.Stop()
		}
	}
}

// report delivers a result like the runtime (and loadgen.ts): first with the next poll in the
// same request (resultNext), whose answer's next is returned; retried alone (the runtime's outbox)
// until applied or refused.
func (a *agent) report(id int64, leaseID string, pollWaitSeconds int) *pollAnswer {
	body := map[string]any{"leaseId": leaseID, "outcome": "succeeded", "outputs": map[string]bool{"bench": true}}
	path := "/v1/agent/commands/" + strconv.FormatInt(id, 10) + "/result"
	for i := 0; i < 30 && !stopped.Load(); i++ {
		next := resultNext && i == 0
		p, timeout := path, 15*time.Second
		if next {
			p, timeout = path+"?next="+strconv.Itoa(pollWaitSeconds), time.Duration(pollWaitSeconds+15)*time.Second
		}
		mu.Lock()
		st.resultRequests++
		mu.Unlock()
		r, err := a.request("POST", p, body, timeout)
		if err == nil && r.status == 200 {
			var ans resultAnswer
			if next {
				_ = json.Unmarshal(r.body, &ans)
			}
			mu.Lock()
			st.resultsOk++
			st.resultDone = append(st.resultDone, stamp{id, nowMs()})
			if ans.Next != nil {
				st.resultNext++
			}
			mu.Unlock()
			return ans.Next
		}
		if err == nil && r.status >= 400 && r.status < 500 {
			mu.Lock()
			st.resultsErr++
			countLocked(fmt.Sprintf("result_%d", r.status))
			mu.Unlock()
			return nil
		}
		if err != nil {
			mu.Lock()
			countLocked(err.Error())
			mu.Unlock()
		}
		sleepCtx(time.Duration(min(10_000, 500*(1<<i))) * time.Millisecond)
	}
	mu.Lock()
	st.resultsErr++
	mu.Unlock()
	return nil
}

func (a *agent) stop() { a.tr.CloseIdleConnections() }

func sleepCtx(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-rootCtx.Done():
	}
}
