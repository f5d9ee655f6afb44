// Command otasign makes and checks the signed bundles package ota
// installs.
//
//	otasign keygen -name alice -out alice          # alice.key (secret), alice.pub
//	otasign sign -key alice.key -name line-3 -version 7 -o v7.otb ./bundle-dir
//	otasign cosign -key bob.key v7.otb             # add a signature (k-of-n)
//	otasign verify -pub alice.pub -pub bob.pub -threshold 2 v7.otb
//	otasign inspect v7.otb
//
// sign takes every regular file under the directory (gateway.yaml, rule
// files, Rego policies, mapping sources, codec layouts) at its relative
// path. -trust PUB (repeatable) and -threshold N rotate the gateways'
// keys; -rollback signs a bundle allowed to go back to an older version.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/iotgw/gateway/ota"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "otasign:", err)
		os.Exit(1)
	}
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

const usage = "usage: otasign keygen|sign|cosign|verify|inspect [flags] (otasign CMD -h)"

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fset := flag.NewFlagSet("otasign "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "keygen":
		name := fset.String("name", "", "key name (required)")
		prefix := fset.String("out", "", "write PREFIX.key and PREFIX.pub (default: the name)")
		if err := fset.Parse(args[1:]); err != nil {
			return err
		}
		if *name == "" {
			return errors.New("keygen: -name is required")
		}
		if *prefix == "" {
			*prefix = *name
		}
		skey, vkey, err := ota.GenerateKey(*name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*prefix+".key", []byte(skey+"\n"), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(*prefix+".pub", []byte(vkey+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(out, vkey)
		return nil
	case "sign":
		var keys, trust, targets, labels list
		fset.Var(&keys, "key", "signer key file (repeatable)")
		name := fset.String("name", "", "bundle name (required)")
		version := fset.Uint64("version", 0, "bundle version, above the running one (required)")
		expires := fset.Duration("expires", 30*24*time.Hour, "validity from now")
		fset.Var(&targets, "target-name", "gateway name glob (repeatable)")
		fset.Var(&labels, "label", "required gateway label key=value (repeatable)")
		rollback := fset.Bool("rollback", false, "allow installing over a newer version")
		fset.Var(&trust, "trust", "verifier key file the gateways trust from now on (repeatable; key rotation)")
		threshold := fset.Int("threshold", 0, "signatures needed under the rotated keys")
		o := fset.String("o", "", "output bundle file (required)")
		if err := fset.Parse(args[1:]); err != nil {
			return err
		}
		if fset.NArg() != 1 || *name == "" || *version == 0 || *o == "" || len(keys) == 0 {
			return errors.New("sign: -key, -name, -version, -o and one directory are required")
		}
		now := time.Now().UTC().Truncate(time.Second)
		m := &ota.Manifest{Name: *name, Version: *version, Created: now, Expires: now.Add(*expires), Rollback: *rollback, Threshold: *threshold}
		m.Target.Names = targets
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				return fmt.Errorf("sign: -label %q: want key=value", l)
			}
			if m.Target.Labels == nil {
				m.Target.Labels = map[string]string{}
			}
			m.Target.Labels[k] = v
		}
		for _, f := range trust {
			v, err := readKey(f)
			if err != nil {
				return err
			}
			m.Trust = append(m.Trust, v)
		}
		b := &ota.Bundle{Files: map[string][]byte{}}
		root := fset.Arg(0)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s is not a regular file", p)
			}
			rel, _ := filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
			if err := ota.CheckPath(rel); err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Files[rel] = data
			return nil
		})
		if err != nil {
			return err
		}
		paths := make([]string, 0, len(b.Files))
		for p := range b.Files {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			m.Files = append(m.Files, ota.FileOf(p, b.Files[p]))
		}
		skeys, err := readKeys(keys)
		if err != nil {
			return err
		}
		if b.Signed, err = ota.Sign(m, skeys...); err != nil {
			return err
		}
		return writeBundle(*o, b)
	case "cosign":
		var keys list
		fset.Var(&keys, "key", "signer key file (repeatable)")
		if err := fset.Parse(args[1:]); err != nil {
			return err
		}
		if fset.NArg() != 1 || len(keys) == 0 {
			return errors.New("cosign: -key and one bundle are required")
		}
		b, err := readBundle(fset.Arg(0))
		if err != nil {
			return err
		}
		skeys, err := readKeys(keys)
		if err != nil {
			return err
		}
		if b.Signed, err = ota.Cosign(b.Signed, skeys...); err != nil {
			return err
		}
		return writeBundle(fset.Arg(0), b)
	case "verify":
		var pubs list
		fset.Var(&pubs, "pub", "trusted verifier key file or key (repeatable)")
		threshold := fset.Int("threshold", 1, "signatures needed")
		if err := fset.Parse(args[1:]); err != nil {
			return err
		}
		if fset.NArg() != 1 || len(pubs) == 0 {
			return errors.New("verify: -pub and one bundle are required")
		}
		tr := ota.Trust{Threshold: *threshold}
		for _, p := range pubs {
			v, err := readKey(p)
			if err != nil {
				return err
			}
			tr.Keys = append(tr.Keys, v)
		}
		if err := tr.Check(); err != nil {
			return err
		}
		b, err := readBundle(fset.Arg(0))
		if err != nil {
			return err
		}
		m, signers, err := b.Verify(tr)
		if err != nil {
			return err
		}
		if time.Now().After(m.Expires) {
			return fmt.Errorf("%w: at %s", ota.ErrExpired, m.Expires.Format(time.RFC3339))
		}
		fmt.Fprintf(out, "OK %s version %d, %d files, signed by %s\n", m.Name, m.Version, len(m.Files), strings.Join(signers, ", "))
		return nil
	case "inspect":
		if err := fset.Parse(args[1:]); err != nil {
			return err
		}
		if fset.NArg() != 1 {
			return errors.New("inspect: one bundle is required")
		}
		b, err := readBundle(fset.Arg(0))
		if err != nil {
			return err
		}
		m, sigs, err := b.Manifest()
		if err != nil {
			return err
		}
		out.Write(m.Format())
		fmt.Fprintf(out, "signatures: %s\n", strings.Join(sigs, ", "))
		return nil
	}
	return errors.New(usage)
}

// readKey reads a key file, or takes the argument as the key itself.
func readKey(s string) (string, error) {
	b, err := os.ReadFile(s)
	if errors.Is(err, fs.ErrNotExist) && strings.Count(s, "+") >= 2 {
		return s, nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readKeys(files []string) ([]string, error) {
	var out []string
	for _, f := range files {
		k, err := readKey(f)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func readBundle(path string) (*ota.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ota.ReadBundle(f, 1<<30)
}

func writeBundle(path string, b *ota.Bundle) error {
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
