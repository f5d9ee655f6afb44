package ota

import (
	"errors"
	"syscall"
)

// Sentinels for errors.Is. Every rejection wraps one of them with the
// detail (which key, which file, which version).
var (
	// ErrMalformed: the bundle or its manifest does not parse.
	ErrMalformed = errors.New("ota: malformed bundle")
	// ErrThreshold: fewer than the threshold of trusted keys signed.
	ErrThreshold = errors.New("ota: not enough valid signatures")
	// ErrUnknownKey: the signatures that would be needed come from keys
	// that are not trusted.
	ErrUnknownKey = errors.New("ota: signed by an unknown key")
	// ErrBadSignature: a trusted key's signature does not verify.
	ErrBadSignature = errors.New("ota: invalid signature")
	// ErrDowngrade: the version is not above the running one and the
	// manifest is not a signed rollback bundle.
	ErrDowngrade = errors.New("ota: version not above the current one")
	// ErrExpired: the manifest's expiry has passed (or it was created in
	// the future beyond the allowed clock skew).
	ErrExpired = errors.New("ota: manifest expired")
	// ErrNotForMe: the manifest's target selector does not match this
	// gateway.
	ErrNotForMe = errors.New("ota: bundle targets other gateways")
	// ErrHashMismatch: a file's sha256 differs from the manifest's.
	ErrHashMismatch = errors.New("ota: file hash mismatch")
	// ErrSizeMismatch: a file's size differs from the manifest's, or a
	// listed file is missing, or an unlisted file is present.
	ErrSizeMismatch = errors.New("ota: file size mismatch")
	// ErrPath: a path leaves the bundle root (absolute, "..", or not in
	// clean form).
	ErrPath = errors.New("ota: path leaves the bundle root")
	// ErrTooLarge: the bundle is larger than the configured limit.
	ErrTooLarge = errors.New("ota: bundle too large")
	// ErrInvalidConfig: the bundle's gateway configuration does not
	// validate; the update never leaves Verifying.
	ErrInvalidConfig = errors.New("ota: configuration does not validate")
	// ErrHook: a Verifier hook refused the bundle.
	ErrHook = errors.New("ota: refused by a hook")
	// ErrBusy: an update is already in progress.
	ErrBusy = errors.New("ota: an update is in progress")
	// ErrBadTransition: an event that the current state does not accept.
	ErrBadTransition = errors.New("ota: transition not allowed")
	// ErrNotModified: the source has nothing new (HTTP 304, same ETag).
	ErrNotModified = errors.New("ota: not modified")
)

// Reason is the short counter name of a rejection sentinel, for logs,
// the reported document and Stats.Rejected.
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	if err == nil {
		return ""
	}
	return "other"
}

var reasons = []struct {
	err  error
	name string
}{
	{ErrMalformed, "malformed"}, {ErrThreshold, "threshold"}, {ErrUnknownKey, "unknown_key"},
	{ErrBadSignature, "bad_signature"}, {ErrDowngrade, "downgrade"}, {ErrExpired, "expired"},
	{ErrNotForMe, "not_for_me"}, {ErrHashMismatch, "hash_mismatch"}, {ErrSizeMismatch, "size_mismatch"},
	{ErrPath, "path"}, {ErrTooLarge, "too_large"}, {ErrInvalidConfig, "invalid_config"}, {ErrHook, "hook"},
	{syscall.ENOSPC, "no_space"},
}
