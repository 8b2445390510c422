package main

// The figures sent back on `report`, with loadgen.ts's LoadgenStats shape and semantics, and the
// heartbeat bodies the agent runtime sends.

import (
	"math"
	"math/rand/v2"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

type stamp struct {
	ID int64   `json:"id"`
	At float64 `json:"at"`
}

// reservoir keeps at most cap samples (bench/lib/util.ts's Reservoir).
type reservoir struct {
	values []float64
	seen   int
}

const reservoirCap = 100_000

func (r *reservoir) add(v float64) {
	r.seen++
	if len(r.values) < reservoirCap {
		r.values = append(r.values, v)
	} else if j := rand.IntN(r.seen); j < reservoirCap {
		r.values[j] = v
	}
}

var (
	// mu guards st (its atomics apart), markAt and every agent's recHb, recPoll and quietUntil.
	mu     sync.Mutex
	markAt float64
	st     struct {
		hbOk, hbErr, pollOk, pollErr, resultsOk, resultsErr, retryAfterWaits int
		resultRequests, resultNext                                           int
		hbLat                                                                reservoir
		claims, resultDone                                                   []stamp
		errors                                                               map[string]int
		tlsConnects, tlsResumed                                              atomic.Int64 // since start, never reset (as Http2Client.stats)
	}
)

func countLocked(code string) {
	if st.errors == nil {
		st.errors = map[string]int{}
	}
	st.errors[code]++
}

type loadgenStats struct {
	Type            string         `json:"type"`
	Agents          int            `json:"agents"`
	Healthy         int            `json:"healthy"`
	Connected       int            `json:"connected"`
	HbOk            int            `json:"hbOk"`
	HbErr           int            `json:"hbErr"`
	HbLatency       []float64      `json:"hbLatency"`
	PollOk          int            `json:"pollOk"`
	PollErr         int            `json:"pollErr"`
	Claims          []stamp        `json:"claims"`
	ResultsOk       int            `json:"resultsOk"`
	ResultsErr      int            `json:"resultsErr"`
	ResultRequests  int            `json:"resultRequests"`
	ResultNext      int            `json:"resultNext"`
	ResultDone      []stamp        `json:"resultDone"`
	RecoveredHb     []float64      `json:"recoveredHb"`
	RecoveredPoll   []float64      `json:"recoveredPoll"`
	TLSConnects     int64          `json:"tlsConnects"`
	TLSResumed      int64          `json:"tlsResumed"`
	RetryAfterWaits int            `json:"retryAfterWaits"`
	Errors          map[string]int `json:"errors"`
	GC              *gcStats       `json:"gc"`
}

// gcStats: the load generator's own garbage collector since start (runtime/metrics), never reset.
// Its mark assists stall the goroutine that allocates (a heartbeat's, a poll's) while it marks:
// time the bench would otherwise count as the control plane's latency.
type gcStats struct {
	Cycles      uint64  `json:"cycles"`
	CPUMs       float64 `json:"cpuMs"`
	AssistCPUMs float64 `json:"assistCpuMs"`
	HeapLiveMB  float64 `json:"heapLiveMB"`
}

func readGC() *gcStats {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/assist:cpu-seconds"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return &gcStats{Cycles: s[0].Value.Uint64(), CPUMs: s[1].Value.Float64() * 1000, AssistCPUMs: s[2].Value.Float64() * 1000, HeapLiveMB: float64(s[3].Value.Uint64()) / 1048576}
}

// snapshot is loadgen.ts's snapshot: claims and results since the last report; the counters,
// latencies and errors cleared too when reset.
func snapshot(reset bool) loadgenStats {
	mu.Lock()
	defer mu.Unlock()
	s := loadgenStats{
		Type: "stats", Agents: len(agents),
		HbOk: st.hbOk, HbErr: st.hbErr, PollOk: st.pollOk, PollErr: st.pollErr, ResultsOk: st.resultsOk, ResultsErr: st.resultsErr,
		ResultRequests: st.resultRequests, ResultNext: st.resultNext,
		HbLatency: append([]float64{}, st.hbLat.values...), Claims: st.claims, ResultDone: st.resultDone,
		RecoveredHb: []float64{}, RecoveredPoll: []float64{},
		TLSConnects: st.tlsConnects.Load(), TLSResumed: st.tlsResumed.Load(), RetryAfterWaits: st.retryAfterWaits,
		Errors: map[string]int{}, GC: readGC(),
	}
	if s.Claims == nil {
		s.Claims = []stamp{}
	}
	if s.ResultDone == nil {
		s.ResultDone = []stamp{}
	}
	for k, v := range st.errors {
		s.Errors[k] = v
	}
	for _, a := range agents {
		if a.healthy.Load() {
			s.Healthy++
		}
		if a.connected.Load() {
			s.Connected++
		}
		if a.recHb >= 0 {
			s.RecoveredHb = append(s.RecoveredHb, a.recHb)
		}
		if a.recPoll >= 0 {
			s.RecoveredPoll = append(s.RecoveredPoll, a.recPoll)
		}
	}
	st.claims, st.resultDone = nil, nil
	if reset {
		st.hbOk, st.hbErr, st.pollOk, st.pollErr, st.resultsOk, st.resultsErr, st.retryAfterWaits = 0, 0, 0, 0, 0, 0, 0
		st.resultRequests, st.resultNext = 0, 0
		st.hbLat = reservoir{}
		st.errors = nil
	}
	return s
}

type fullMetrics struct {
	CPUPercent       float64    `json:"cpuPercent"`
	MemoryTotalBytes int64      `json:"memoryTotalBytes"`
	MemoryUsedBytes  int64      `json:"memoryUsedBytes"`
	DiskTotalBytes   int64      `json:"diskTotalBytes"`
	DiskUsedBytes    int64      `json:"diskUsedBytes"`
	Load             [3]float64 `json:"load"`
	UptimeSeconds    int64      `json:"uptimeSeconds"`
	RssBytes         int64      `json:"rssBytes"`
}

type movingMetrics struct {
	CPUPercent      float64    `json:"cpuPercent"`
	MemoryUsedBytes int64      `json:"memoryUsedBytes"`
	Load            [3]float64 `json:"load"`
	UptimeSeconds   int64      `json:"uptimeSeconds"`
	RssBytes        int64      `json:"rssBytes"`
}

type fullBeat struct {
	Version string      `json:"version"`
	Metrics fullMetrics `json:"metrics"`
	Running []string    `json:"running"`
}

type movingBeat struct {
	Metrics movingMetrics `json:"metrics"`
	Running []string      `json:"running"`
}

// heartbeatBody is loadgen.ts's: everything on the first beat and once a minute (every 12th),
// otherwise only the metrics that move between two beats.
func heartbeatBody(n int) any {
	uptime := int64(math.Round(time.Since(started).Seconds())) + 86_400
	if n%12 == 0 {
		return fullBeat{Version: "0.1.0", Running: []string{}, Metrics: fullMetrics{
			CPUPercent: 3.2, MemoryTotalBytes: 8_340_000_000, MemoryUsedBytes: 2_110_000_000, DiskTotalBytes: 100_000_000_000,
			DiskUsedBytes: 31_000_000_000, Load: [3]float64{0.12, 0.2, 0.18}, UptimeSeconds: uptime, RssBytes: 48_000_000,
		}}
	}
	wobble := float64(n%7) / 100
	return movingBeat{Running: []string{}, Metrics: movingMetrics{
		CPUPercent: 3.2 + wobble, MemoryUsedBytes: 2_110_000_000 + int64(n)*4096, Load: [3]float64{0.12 + wobble, 0.2, 0.18},
		UptimeSeconds: uptime, RssBytes: 48_000_000 + int64(n)*1024,
	}}
}
