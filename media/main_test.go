package media

import (
	"os"
	"testing"

	"github.com/portcullis-sbc/portcullis/media/relay"
)

// TestMain starts the relay's pollers before any test counts goroutines.
func TestMain(m *testing.M) {
	relay.StartPollers()
	os.Exit(m.Run())
}
