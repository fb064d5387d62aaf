package capsule

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

// The raw limit is one HPKE base-mode operation on a 32-byte CEK with circl:
// a seal (X25519 keygen + DH + HKDF + AEAD) or an open (DH + HKDF + AEAD).
// The machine is shared and noisy, so every iteration times one raw
// operation right next to the measured one, and the ratio compares the two
// sums: both see the same contention.

func audience(n int) ([]*key.Secret, []key.ID) {
	var sks []*key.Secret
	var ids []key.ID
	for i := range n {
		sk, _ := key.FromSeed(key.DeriveSeed([]byte("bench"), fmt.Sprint(i)))
		sks = append(sks, sk)
		ids = append(ids, sk.ID())
	}
	return sks, ids
}

// body1K is a CBOR byte string of 1024 bytes.
var body1K = append([]byte{0x59, 0x04, 0x00}, make([]byte, 1024)...)

// BenchmarkSeal: a 1 KiB body to 1 and 100 recipients (padded: 4 and 256
// wraps), as a ratio to one raw HPKE seal, and per real recipient.
func BenchmarkSeal(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			sks, ids := audience(n)
			vis := Group
			if n == 1 {
				vis = Direct
			}
			p := Params{Net: "net:bench", RID: rid, Visibility: vis, Recipients: ids, Body: body1K}
			cek, aad := make([]byte, CEKSize), []byte("aad")
			var raw, op time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := hpkeWrap(sks[0].ID(), infoWrap, cek, aad, rand.Reader); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := Seal(p, rand.Reader); err != nil {
					b.Fatal(err)
				}
				raw, op = raw+t1.Sub(t0), op+time.Since(t1)
			}
			b.ReportMetric(float64(op.Nanoseconds())/float64(b.N), "ns/seal")
			b.ReportMetric(float64(op)/float64(raw), "x-raw-hpke-seal")
			b.ReportMetric(float64(op)/float64(raw)/float64(n), "x-raw-hpke-seal/recipient")
		})
	}
}

// BenchmarkOpen: the same cards opened by one recipient (its wrap sits at a
// random position among the padded wraps, so the reader tries half of them on
// average), as a ratio to one raw HPKE open.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			sks, ids := audience(n)
			vis := Group
			if n == 1 {
				vis = Direct
			}
			var sealed []*Sealed
			for range 16 {
				s, err := Seal(Params{Net: "net:bench", RID: rid, Visibility: vis, Recipients: ids, Body: body1K}, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				sealed = append(sealed, s)
			}
			reader := sks[n/2]
			keys := Keys{Identities: []*key.Secret{reader}}
			aad := []byte("aad")
			w, _ := hpkeWrap(reader.ID(), infoWrap, make([]byte, CEKSize), aad, rand.Reader)
			xsk := hpkePrivate(reader)
			var raw, op time.Duration
			i := 0
			for b.Loop() {
				s := sealed[i%len(sealed)]
				i++
				t0 := time.Now()
				if _, ok := hpkeUnwrap(xsk, infoWrap, w, aad); !ok {
					b.Fatal("raw open failed")
				}
				t1 := time.Now()
				if _, err := Open(s.Body, Binding{Net: "net:bench", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}, keys); err != nil {
					b.Fatal(err)
				}
				raw, op = raw+t1.Sub(t0), op+time.Since(t1)
			}
			b.ReportMetric(float64(op.Nanoseconds())/float64(b.N), "ns/open")
			b.ReportMetric(float64(op)/float64(raw), "x-raw-hpke-open")
		})
	}
}
