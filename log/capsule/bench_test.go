package capsule

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

// rawHPKE measures the physical limit in this run: one raw HPKE base-mode
// seal of a 32-byte CEK (one X25519 keygen + one X25519 DH + HKDF + AEAD),
// and one raw open (one DH + HKDF + AEAD), per operation.
func rawHPKE(b *testing.B, to *key.Secret) (seal, open time.Duration) {
	b.Helper()
	cek := make([]byte, CEKSize)
	aad := []byte("aad")
	const n = 500
	w := make([][]byte, n)
	t0 := time.Now()
	for i := range n {
		var err error
		if w[i], err = hpkeWrap(to.ID(), infoWrap, cek, aad, rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
	seal = time.Since(t0) / n
	sk := hpkePrivate(to)
	t0 = time.Now()
	for i := range n {
		if _, ok := hpkeUnwrap(sk, infoWrap, w[i], aad); !ok {
			b.Fatal("raw open failed")
		}
	}
	open = time.Since(t0) / n
	return seal, open
}

func audience(b *testing.B, n int) ([]*key.Secret, []key.ID) {
	var sks []*key.Secret
	var ids []key.ID
	for i := range n {
		sk, _ := key.FromSeed(key.DeriveSeed([]byte("bench"), fmt.Sprint(i)))
		sks = append(sks, sk)
		ids = append(ids, sk.ID())
	}
	return sks, ids
}

// BenchmarkSeal: a 1 KiB body to 1 and 100 recipients (padded: 4 and 256
// wraps). Reports the ratio to one raw HPKE seal, and per real recipient.
func BenchmarkSeal(b *testing.B) {
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'x'
	}
	pt := append([]byte{0x59, 0x04, 0x00}, body...) // CBOR bstr of 1024 bytes
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			sks, ids := audience(b, n)
			vis := Group
			if n == 1 {
				vis = Direct
			}
			rawSeal, _ := rawHPKE(b, sks[0])
			p := Params{Net: "net:bench", RID: rid, Visibility: vis, Recipients: ids, Body: pt}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if _, err := Seal(p, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			after, _ := rawHPKE(b, sks[0])
			rawSeal = (rawSeal + after) / 2
			b.ReportMetric(float64(per)/float64(rawSeal), "x-raw-hpke-seal")
			b.ReportMetric(float64(per)/float64(rawSeal)/float64(n), "x-raw-hpke-seal/recipient")
		})
	}
}

// BenchmarkOpen: the same cards opened by one recipient (its wrap sits at a
// random position among the padded wraps, so the reader tries half of them on
// average), as a ratio to one raw HPKE open.
func BenchmarkOpen(b *testing.B) {
	pt := append([]byte{0x59, 0x04, 0x00}, make([]byte, 1024)...)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			sks, ids := audience(b, n)
			vis := Group
			if n == 1 {
				vis = Direct
			}
			_, rawOpen := rawHPKE(b, sks[0])
			var sealed []*Sealed
			for range 16 {
				s, err := Seal(Params{Net: "net:bench", RID: rid, Visibility: vis, Recipients: ids, Body: pt}, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				sealed = append(sealed, s)
			}
			keys := Keys{Identities: []*key.Secret{sks[n/2]}}
			b.ResetTimer()
			start := time.Now()
			i := 0
			for b.Loop() {
				s := sealed[i%len(sealed)]
				i++
				if _, err := Open(s.Body, Binding{Net: "net:bench", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}, keys); err != nil {
					b.Fatal(err)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			_, after := rawHPKE(b, sks[0])
			rawOpen = (rawOpen + after) / 2 // the limit before and after: the machine is shared
			b.ReportMetric(float64(per)/float64(rawOpen), "x-raw-hpke-open")
		})
	}
}
