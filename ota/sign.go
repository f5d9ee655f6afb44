package ota

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Trust is the set of keys a gateway trusts and how many of them must
// sign a bundle. Keys are verifier keys in the signed-note format
// ("name+hash+base64", Ed25519; GenerateKey makes them).
type Trust struct {
	Keys      []string
	Threshold int
}

// Check validates the keys and the threshold.
func (t Trust) Check() error {
	if len(t.Keys) == 0 {
		return errors.New("ota: no trusted keys")
	}
	if t.Threshold < 1 || t.Threshold > len(t.Keys) {
		return fmt.Errorf("ota: threshold %d outside 1..%d (the number of trusted keys)", t.Threshold, len(t.Keys))
	}
	names := map[string]bool{}
	for i, k := range t.Keys {
		v, err := parseVerifier(k)
		if err != nil {
			return fmt.Errorf("ota: trusted key %d: %w", i+1, err)
		}
		if names[v.Name()] {
			return fmt.Errorf("ota: two trusted keys are named %q", v.Name())
		}
		names[v.Name()] = true
	}
	return nil
}

func parseVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("bad verifier key %q: %v", vkey, err)
	}
	return v, nil
}

// GenerateKey makes an Ed25519 key pair named name: the signer key (keep
// it secret) and the verifier key (give it to gateways).
func GenerateKey(name string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, name)
}

// Sign formats m and signs it with each signer key. Give every key holder
// the result in turn with Cosign to collect a threshold of signatures.
func Sign(m *Manifest, skeys ...string) ([]byte, error) {
	text := m.Format()
	if _, err := ParseManifest(text); err != nil {
		return nil, err
	}
	return signNote(&note.Note{Text: string(text)}, skeys)
}

// Cosign adds the signatures of skeys to a signed manifest, keeping the
// ones already there.
func Cosign(msg []byte, skeys ...string) ([]byte, error) {
	_, err := note.Open(msg, note.VerifierList())
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	n := unv.Note
	n.Sigs, n.UnverifiedSigs = n.UnverifiedSigs, nil
	return signNote(n, skeys)
}

func signNote(n *note.Note, skeys []string) ([]byte, error) {
	var signers []note.Signer
	for _, k := range skeys {
		s, err := note.NewSigner(k)
		if err != nil {
			return nil, fmt.Errorf("ota: bad signer key: %v", err)
		}
		signers = append(signers, s)
	}
	return note.Sign(n, signers...)
}

// OpenManifest checks the signatures of a signed manifest against t and
// parses it. It returns the names of the trusted keys that signed. Errors
// wrap ErrMalformed, ErrBadSignature, ErrUnknownKey or ErrThreshold.
//
// Signatures by keys outside t do not count. When they would have been
// needed to reach the threshold the error is ErrUnknownKey (naming them),
// otherwise ErrThreshold.
func OpenManifest(msg []byte, t Trust) (*Manifest, []string, error) {
	if len(msg) > maxManifest {
		return nil, nil, fmt.Errorf("%w: signed manifest of %d bytes (limit %d)", ErrMalformed, len(msg), maxManifest)
	}
	var vs []note.Verifier
	for _, k := range t.Keys {
		v, err := parseVerifier(k)
		if err != nil {
			return nil, nil, fmt.Errorf("ota: trust: %w", err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	var unv *note.UnverifiedNoteError
	var inv *note.InvalidSignatureError
	switch {
	case errors.As(err, &unv):
		n = unv.Note
	case errors.As(err, &inv):
		return nil, nil, fmt.Errorf("%w: key %s", ErrBadSignature, inv.Name)
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var signers []string
	for _, s := range n.Sigs {
		signers = append(signers, s.Name)
	}
	if len(signers) < t.Threshold {
		var unknown []string
		for _, s := range n.UnverifiedSigs {
			unknown = append(unknown, s.Name)
		}
		if len(unknown) > 0 {
			return nil, nil, fmt.Errorf("%w: %s (%d of %d trusted signatures)", ErrUnknownKey, strings.Join(unknown, ", "), len(signers), t.Threshold)
		}
		return nil, nil, fmt.Errorf("%w: %d of %d", ErrThreshold, len(signers), t.Threshold)
	}
	m, err := ParseManifest([]byte(n.Text))
	if err != nil {
		return nil, nil, err
	}
	return m, signers, nil
}
