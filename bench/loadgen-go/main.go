// A load generator for bench/main.ts in Go: the same simulated agents as bench/loadgen.ts (see
// agent.go) at a fraction of its CPU per agent, so that 10,000 and 20,000 agents can be measured on
// a 2-core machine where the Node load generators needed about as much CPU as the server.
//
// Driven like loadgen.ts, with the same messages as newline-delimited JSON: on stdin `start`
// (LoadgenStart), `report` {reset}, `mark`, `stop`; on stdout `started`, `stats` (LoadgenStats),
// `marked`. Diagnostics go to stderr. It exits when stdin closes (the parent went away).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type startMsg struct {
	Type            string `json:"type"`
	URL             string `json:"url"`
	CaPem           string `json:"caPem"`
	IdentityDir     string `json:"identityDir"`
	From            int    `json:"from"`
	To              int    `json:"to"`
	HeartbeatMs     int    `json:"heartbeatMs"`
	PollWaitSeconds int    `json:"pollWaitSeconds"`
	RampMs          int    `json:"rampMs"`
	Mode            string `json:"mode"`
	LocalAddresses  int    `json:"localAddresses"`
	Reset           bool   `json:"reset"`
}

type identity struct {
	I        int     `json:"i"`
	CertPem  string  `json:"certPem"`
	Key      int     `json:"key"`
	NotAfter float64 `json:"notAfter"`
}

type tlsRoots struct {
	pool       *x509.CertPool
	serverName string
}

var (
	rootCtx, cancelRoot = context.WithCancel(context.Background())
	stopped             atomic.Bool
	started             = time.Now()
	outMu               sync.Mutex
	out                 = bufio.NewWriter(os.Stdout)
	agents              []*agent
)

// nowMs is bench/lib/util.ts's nowMs: wall-clock milliseconds, comparable across processes.
func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

func send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen-go: %v\n", err)
		os.Exit(1)
	}
	outMu.Lock()
	defer outMu.Unlock()
	out.Write(b)
	out.WriteByte('\n')
	out.Flush()
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "loadgen-go: "+format+"\n", a...)
	os.Exit(1)
}

// loadIdentities reads bench/lib/identities.ts's cache: agents.jsonl (a torn last line skipped,
// certificates expiring within a day left out, as loadIdentities does) and the pool of keys.
func loadIdentities(dir string) (map[int]identity, map[int]any) {
	ids := map[int]identity{}
	if b, err := os.ReadFile(filepath.Join(dir, "agents.jsonl")); err == nil {
		soon := float64(time.Now().Add(24 * time.Hour).UnixMilli())
		for _, line := range strings.Split(string(b), "\n") {
			var id identity
			if line == "" || json.Unmarshal([]byte(line), &id) != nil {
				continue
			}
			if id.NotAfter > soon {
				ids[id.I] = id
			}
		}
	}
	keys := map[int]any{}
	files, _ := filepath.Glob(filepath.Join(dir, "keys", "k*.json"))
	for _, f := range files {
		var k struct {
			PrivateKeyPem string `json:"privateKeyPem"`
		}
		var n int
		if _, err := fmt.Sscanf(filepath.Base(f), "k%d.json", &n); err != nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &k) != nil {
			fail("cannot read key %s", f)
		}
		blk, _ := pem.Decode([]byte(k.PrivateKeyPem))
		if blk == nil {
			fail("no PEM key in %s", f)
		}
		key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
				fail("key %s: %v", f, err)
			}
		}
		keys[n] = key
	}
	return ids, keys
}

func startAgents(m *startMsg) {
	if m.Mode != "ack" && m.Mode != "hold" {
		fail("mode must be ack or hold, got %q", m.Mode)
	}
	u, err := url.Parse(m.URL)
	if err != nil || u.Scheme != "https" {
		fail("the control plane URL must be https:// (got %s)", m.URL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(m.CaPem)) {
		fail("no CA certificate in caPem")
	}
	roots := &tlsRoots{pool: pool, serverName: u.Hostname()}
	ids, keys := loadIdentities(m.IdentityDir)
	for i := m.From; i < m.To; i++ {
		id, ok := ids[i]
		if !ok {
			fail("identity %d missing in %s", i, filepath.Join(m.IdentityDir, "agents.jsonl"))
		}
		key, ok := keys[id.Key]
		if !ok {
			fail("key %d missing in %s", id.Key, m.IdentityDir)
		}
		var chain [][]byte
		for rest := []byte(id.CertPem); ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			chain = append(chain, blk.Bytes)
		}
		if len(chain) == 0 {
			fail("identity %d: no certificate", i)
		}
		agents = append(agents, newAgent(i, m, tls.Certificate{Certificate: chain, PrivateKey: key}, roots))
	}
	for _, a := range agents {
		time.AfterFunc(time.Duration(rand.Float64()*float64(m.RampMs))*time.Millisecond, func() { a.start(m) })
	}
}

func main() {
	honourRetryAfter = os.Getenv("BENCH_AGENT_RETRY_AFTER") != "0"
	resultNext = os.Getenv("BENCH_AGENT_RESULT_NEXT") != "0"
	if v := os.Getenv("BENCH_AGENT_EXTRA_HEADERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 64 {
			fail("BENCH_AGENT_EXTRA_HEADERS must be 0-64 (got %q)", v)
		}
		for i := 0; i < n; i++ {
			extraHeaders = append(extraHeaders, [2]string{fmt.Sprintf("x-bench-pad-%d", i), fmt.Sprintf("pad-%d", i)})
		}
	}
	// BENCH_LOADGEN_CPUPROFILE=<file>: a CPU profile of the whole run (go tool pprof), written at stop.
	if f := os.Getenv("BENCH_LOADGEN_CPUPROFILE"); f != "" {
		w, err := os.Create(f)
		if err != nil || pprof.StartCPUProfile(w) != nil {
			fail("cannot profile to %s", f)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	for in.Scan() {
		var m startMsg
		if err := json.Unmarshal(in.Bytes(), &m); err != nil {
			fail("bad message: %v", err)
		}
		switch m.Type {
		case "start":
			if agents != nil {
				fail("started twice")
			}
			startAgents(&m)
			send(map[string]string{"type": "started"})
		case "report":
			send(snapshot(m.Reset))
		case "mark":
			mu.Lock()
			markAt = nowMs()
			for _, a := range agents {
				a.recHb, a.recPoll = -1, -1
			}
			mu.Unlock()
			send(map[string]string{"type": "marked"})
		case "stop":
			stop()
		default:
			fail("unknown message type %q", m.Type)
		}
	}
	if err := in.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		fmt.Fprintf(os.Stderr, "loadgen-go: stdin: %v\n", err)
	}
	stop() // the parent went away
}

func stop() {
	stopped.Store(true)
	cancelRoot()
	for _, a := range agents {
		a.stop()
	}
	time.Sleep(200 * time.Millisecond)
	pprof.StopCPUProfile()
	os.Exit(0)
}
