package main

// A port of common/agent/retry.plan.ts (retryDelay and parseRetryAfter): the same arithmetic, so
// the simulated agents back off and honour Retry-After exactly as the agent runtime does. Keep the
// two in step when the runtime's plan changes.

import (
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfterMs is MAX_RETRY_AFTER_MS: the longest wait an agent accepts from a Retry-After.
const maxRetryAfterMs = 60_000.0

// retryAfterJitterMs is RETRY_AFTER_JITTER_MS: added to a Retry-After, times a random number in [0, 1).
const retryAfterJitterMs = 1000.0

var (
	deltaSeconds = regexp.MustCompile(`^[0-9]{1,9}$`)
	httpDateHead = regexp.MustCompile(`^[A-Za-z]{3},? `)
)

// parseRetryAfter is parseRetryAfter: delta-seconds or an HTTP-date relative to now, in ms; ok
// false when absent or neither; a date in the past is 0.
func parseRetryAfter(value string, now time.Time) (float64, bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if deltaSeconds.MatchString(v) {
		n, _ := strconv.Atoi(v)
		return float64(n) * 1000, true
	}
	if len(v) > 64 || !httpDateHead.MatchString(v) {
		return 0, false
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return math.Max(0, float64(at.Sub(now).Milliseconds())), true
}

type retryCause int

const (
	causeBackoff retryCause = iota
	causeRetryAfter
)

// retryDelay is retryDelay: the control plane's Retry-After (bounded, plus up to a second of
// jitter) when it gave one, else min doubling per attempt up to max, ×1–2. Checked against the
// TypeScript plan's own answers by retry_test.go (test/bench/loadgen-go-retry.test.ts).
func retryDelay(attempt int, retryAfterMs float64, hasRetryAfter bool, minBackoffMs, maxBackoffMs float64, random float64) (time.Duration, retryCause) {
	if hasRetryAfter && !math.IsInf(retryAfterMs, 0) && !math.IsNaN(retryAfterMs) && retryAfterMs >= 0 {
		asked := math.Min(maxRetryAfterMs, retryAfterMs)
		jitter := retryAfterJitterMs * random
		return msDuration(math.Round(math.Min(maxRetryAfterMs, asked+jitter))), causeRetryAfter
	}
	ms := math.Min(maxBackoffMs, math.Round((1+random)*minBackoffMs*math.Pow(2, float64(max(1, attempt)-1))))
	return msDuration(ms), causeBackoff
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// heartbeatDelay is heartbeatDelay: 0 (the next tick) after one failure, then the heartbeat
// interval doubling per further failure, ×1–2, up to max. Checked against the TypeScript plan by
// retry_test.go (test/bench/loadgen-go-retry.test.ts).
func heartbeatDelay(failures int, intervalMs, maxBackoffMs, random float64) time.Duration {
	if failures < 2 {
		return 0
	}
	return msDuration(math.Min(maxBackoffMs, math.Round((1+random)*intervalMs*math.Pow(2, float64(min(30, failures-2))))))
}
