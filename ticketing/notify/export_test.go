package notify

import (
	"testing"
	"time"
)

// SetSMTPTimeout shortens the SMTP deadline for one test.
func SetSMTPTimeout(t *testing.T, d time.Duration) {
	old := smtpTimeout
	smtpTimeout = d
	t.Cleanup(func() { smtpTimeout = old })
}
