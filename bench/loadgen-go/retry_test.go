package main

// The port against the original: every case in $RETRY_CASES (JSON written by
// test/bench/loadgen-go-retry.test.ts from common/agent/retry.plan.ts's own retryDelay) must give
// the same wait and cause here. Run by that test: `RETRY_CASES=<file> go test -run RetryDelay .`

import (
	"encoding/json"
	"os"
	"testing"
)

type retryCase struct {
	Attempt      int      `json:"attempt"`
	RetryAfterMs *float64 `json:"retryAfterMs"`
	MinBackoffMs float64  `json:"minBackoffMs"`
	MaxBackoffMs float64  `json:"maxBackoffMs"`
	Random       float64  `json:"random"`
	Ms           float64  `json:"ms"`
	Cause        string   `json:"cause"`
}

// loadCases reads the cases the TypeScript test wrote to the file named by $env.
func loadCases[T any](t *testing.T, env string) []T {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		t.Fatal(env + " is not set: the cases come from common/agent/retry.plan.ts (test/bench/loadgen-go-retry.test.ts)")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []T
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	return cases
}

func TestRetryDelayMatchesThePlan(t *testing.T) {
	cases := loadCases[retryCase](t, "RETRY_CASES")
	bad := 0
	for _, c := range cases {
		after, has := 0.0, c.RetryAfterMs != nil
		if has {
			after = *c.RetryAfterMs
		}
		d, cause := retryDelay(c.Attempt, after, has, c.MinBackoffMs, c.MaxBackoffMs, c.Random)
		want := causeBackoff
		if c.Cause == "retry_after" {
			want = causeRetryAfter
		}
		if got := float64(d.Milliseconds()); got != c.Ms || cause != want {
			if bad++; bad <= 10 {
				t.Errorf("attempt %d, Retry-After %v ms (given: %v), random %v: got %v ms (cause %d), the plan says %v ms (%s)", c.Attempt, after, has, c.Random, got, cause, c.Ms, c.Cause)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d cases differ from retry.plan.ts", bad, len(cases))
	}
}

type heartbeatCase struct {
	Failures     int     `json:"failures"`
	IntervalMs   float64 `json:"intervalMs"`
	MaxBackoffMs float64 `json:"maxBackoffMs"`
	Random       float64 `json:"random"`
	Ms           float64 `json:"ms"`
}

func TestHeartbeatDelayMatchesThePlan(t *testing.T) {
	cases := loadCases[heartbeatCase](t, "HEARTBEAT_CASES")
	bad := 0
	for _, c := range cases {
		if got := float64(heartbeatDelay(c.Failures, c.IntervalMs, c.MaxBackoffMs, c.Random).Milliseconds()); got != c.Ms {
			if bad++; bad <= 10 {
				t.Errorf("%d failures, interval %v ms, max %v ms, random %v: got %v ms, the plan says %v ms", c.Failures, c.IntervalMs, c.MaxBackoffMs, c.Random, got, c.Ms)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d cases differ from retry.plan.ts", bad, len(cases))
	}
}
