package turn

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
)

// pionLogs adapts pion's logger to slog. pion logs failed authentications
// and bad datagrams at Error level, which an attacker controls, so Warn and
// Error go out at Warn level at most once per 10 s per scope; the rest is
// Debug.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct {
	log  *slog.Logger
	next atomic.Int64
}

func (l *pionLogger) debug(msg string) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(msg)
	}
}

func (l *pionLogger) warn(msg string) {
	now := time.Now().UnixNano()
	n := l.next.Load()
	if now < n || !l.next.CompareAndSwap(n, now+int64(10*time.Second)) {
		l.debug(msg)
		return
	}
	l.log.Warn(msg, "note", "further pion warnings suppressed for 10s")
}

func (l *pionLogger) Trace(msg string)                  {}
func (l *pionLogger) Tracef(string, ...any)             {}
func (l *pionLogger) Debug(msg string)                  { l.debug(msg) }
func (l *pionLogger) Debugf(format string, args ...any) { l.debugf(format, args...) }
func (l *pionLogger) Info(msg string)                   { l.debug(msg) }
func (l *pionLogger) Infof(format string, args ...any)  { l.debugf(format, args...) }
func (l *pionLogger) Warn(msg string)                   { l.warn(msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { l.warn(fmt.Sprintf(format, args...)) }
func (l *pionLogger) Error(msg string)                  { l.warn(msg) }
func (l *pionLogger) Errorf(format string, args ...any) { l.warn(fmt.Sprintf(format, args...)) }

func (l *pionLogger) debugf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}
