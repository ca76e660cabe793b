package relay

import (
	"os"
	"testing"
)

// TestMain starts the pollers before any test counts goroutines.
func TestMain(m *testing.M) {
	StartPollers()
	os.Exit(m.Run())
}
