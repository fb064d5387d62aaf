package card

import "github.com/sublog/sublog/log/key"

// Build is what Sign decides before it signs: the payload bytes, or the
// refusal. The agreement fuzzer uses it to test every draft without paying
// for an Ed25519 signature each time.
func Build(author key.ID, seq uint64, prev ID, d Draft) ([]byte, error) {
	_, pb, err := build(author, seq, prev, d)
	return pb, err
}
