package turn

import (
	"crypto/md5" //nolint:gosec // the HA1 format is MD5 by definition
	"encoding/hex"
)

func hexMD5(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
