package ota_test

import (
	"fmt"
	"time"

	"github.com/iotgw/gateway/ota"
)

// Two of three keys must sign; a manifest signed by one is refused.
func ExampleOpenManifest() {
	var skeys, vkeys []string
	for _, name := range []string{"alice", "bob", "carol"} {
		s, v, _ := ota.GenerateKey(name)
		skeys, vkeys = append(skeys, s), append(vkeys, v)
	}
	trust := ota.Trust{Keys: vkeys, Threshold: 2}
	cfg := []byte("connectors: []\n")
	m := &ota.Manifest{Name: "line-3", Version: 7,
		Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		Files: []ota.File{ota.FileOf(ota.ConfigFile, cfg)}}

	one, _ := ota.Sign(m, skeys[0])
	_, _, err := ota.OpenManifest(one, trust)
	fmt.Println(err)

	two, _ := ota.Cosign(one, skeys[2])
	got, signers, err := ota.OpenManifest(two, trust)
	fmt.Println(got.Name, got.Version, signers, err)
	// Output:
	// ota: not enough valid signatures: 1 of 2
	// line-3 7 [alice carol] <nil>
}
