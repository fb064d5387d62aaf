package golden

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The public Ed25519 corpora of the `ed25519-corpus` suite come from Go
// modules, read from the module cache (fetched by `go mod download`, the
// ordinary client) only when the vectors are rewritten with -update. The
// versions are pinned here so a rewrite is reproducible.
const (
	// Wycheproof's EdDSA verification cases (testvectors_v1/ed25519_test.json).
	wycheproofModule = "github.com/c2sp/wycheproof@v0.0.0-20260902155932-3fa63dd0344a"
	// curve25519-voi ships the speccheck cases of "Taming the many EdDSAs"
	// (Chalkias, Garillot, Nikolaenko) and the ed25519vectors corpus in its
	// test data; the same version log/key pins in go.mod.
	voiModule = "github.com/oasisprotocol/curve25519-voi@v0.0.0-20230904125328-1f23a7beb09a"
)

// moduleDir asks the go command where a module version lives (downloading
// it into the module cache if it is not there yet).
func moduleDir(mod string) (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		return "", fmt.Errorf("golden: go mod download %s: %w", mod, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("golden: go mod download %s: %s %v", mod, info.Error, err)
	}
	return info.Dir, nil
}

func readMaybeGz(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(p, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		r = zr
	}
	return io.ReadAll(r)
}

func hexField(s string) ([]byte, error) { return hex.DecodeString(s) }

func genEd25519Corpus() ([]*Vector, error) {
	const suite = "ed25519-corpus"
	var out []*Vector
	add := func(v *Vector, err error) error {
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}

	// Wycheproof.
	wd, err := moduleDir(wycheproofModule)
	if err != nil {
		return nil, err
	}
	wb, err := readMaybeGz(filepath.Join(wd, "testvectors_v1", "ed25519_test.json"))
	if err != nil {
		return nil, err
	}
	var w struct {
		TestGroups []struct {
			PublicKey struct{ PK string } `json:"publicKey"`
			Tests     []struct {
				TcID    int      `json:"tcId"`
				Comment string   `json:"comment"`
				Msg     string   `json:"msg"`
				Sig     string   `json:"sig"`
				Result  string   `json:"result"`
				Flags   []string `json:"flags"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	if err := json.Unmarshal(wb, &w); err != nil {
		return nil, fmt.Errorf("golden: wycheproof: %w", err)
	}
	for _, g := range w.TestGroups {
		pub, err := hexField(g.PublicKey.PK)
		if err != nil {
			return nil, err
		}
		for _, t := range g.Tests {
			msg, err1 := hexField(t.Msg)
			sig, err2 := hexField(t.Sig)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("golden: wycheproof tcId %d: bad hex", t.TcID)
			}
			src := fmt.Sprintf("Wycheproof ed25519_test.json tcId %d (%s): %s", t.TcID, t.Result, t.Comment)
			if len(t.Flags) > 0 {
				src += " [" + strings.Join(t.Flags, ", ") + "]"
			}
			v, err := sigVector(suite, fmt.Sprintf("wycheproof-tc%03d", t.TcID), src, nil, pub, msg, sig)
			if err != nil {
				return nil, err
			}
			e, _ := v.Get("expect")
			if (t.Result == "valid") != (e == "accept") && t.Result != "acceptable" {
				return nil, fmt.Errorf("golden: wycheproof tcId %d is %s but the store says %s", t.TcID, t.Result, e)
			}
			if err := add(v, nil); err != nil {
				return nil, err
			}
			if strings.Contains(t.Comment, "Test 1024") {
				if err := add(sigVector(suite, "rfc8032-test1024", "RFC 8032 section 7.1 TEST 1024 (as carried by Wycheproof tcId "+fmt.Sprint(t.TcID)+")", nil, pub, msg, sig)); err != nil {
					return nil, err
				}
			}
		}
	}

	vd, err := moduleDir(voiModule)
	if err != nil {
		return nil, err
	}
	td := filepath.Join(vd, "primitives", "ed25519", "testdata")

	// speccheck: the 12 cases of "Taming the many EdDSAs".
	sb, err := readMaybeGz(filepath.Join(td, "speccheck_cases.json.gz"))
	if err != nil {
		return nil, err
	}
	var sc []struct {
		Message   string `json:"message"`
		PubKey    string `json:"pub_key"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(sb, &sc); err != nil {
		return nil, fmt.Errorf("golden: speccheck: %w", err)
	}
	for i, c := range sc {
		msg, err1 := hexField(c.Message)
		pub, err2 := hexField(c.PubKey)
		sig, err3 := hexField(c.Signature)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("golden: speccheck case %d: bad hex", i)
		}
		if err := add(sigVector(suite, fmt.Sprintf("speccheck-%02d", i), fmt.Sprintf("Taming the many EdDSAs, speccheck case %d", i), nil, pub, msg, sig)); err != nil {
			return nil, err
		}
	}

	// ed25519vectors: 768 combinations of edge-case A, R and S.
	eb, err := readMaybeGz(filepath.Join(td, "ed25519vectors.json.gz"))
	if err != nil {
		return nil, err
	}
	var ev []struct {
		A, R, S, M string
		Flags      []string
	}
	if err := json.Unmarshal(eb, &ev); err != nil {
		return nil, fmt.Errorf("golden: ed25519vectors: %w", err)
	}
	for i, c := range ev {
		pub, err1 := hexField(c.A)
		r, err2 := hexField(c.R)
		s, err3 := hexField(c.S)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("golden: ed25519vectors case %d: bad hex", i)
		}
		src := fmt.Sprintf("ed25519vectors case %d", i)
		if len(c.Flags) > 0 {
			src += " [" + strings.Join(c.Flags, ", ") + "]"
		}
		if err := add(sigVector(suite, fmt.Sprintf("ed25519vectors-%03d", i), src, nil, pub, []byte(c.M), append(r, s...))); err != nil {
			return nil, err
		}
	}
	return out, nil
}
