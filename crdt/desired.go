package crdt

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Desired is the typed reading of a document: what the owner wants. Values
// the schema cannot read (another implementation wrote a string where a
// number belongs, say) are left out and listed in Problems.
type Desired struct {
	Owner     string            `cbor:"owner" json:"owner"`
	Service   string            `cbor:"service" json:"service"`
	Removed   bool              `cbor:"removed,omitempty" json:"removed,omitempty"`
	Bundle    string            `cbor:"bundle,omitempty" json:"bundle,omitempty"`
	Version   string            `cbor:"version,omitempty" json:"version,omitempty"`
	Replicas  int64             `cbor:"replicas" json:"replicas"`
	CPU       int64             `cbor:"cpu,omitempty" json:"cpu,omitempty"`
	Memory    int64             `cbor:"memory,omitempty" json:"memory,omitempty"`
	Disk      int64             `cbor:"disk,omitempty" json:"disk,omitempty"`
	GPU       int64             `cbor:"gpu,omitempty" json:"gpu,omitempty"`
	Bandwidth int64             `cbor:"bandwidth,omitempty" json:"bandwidth,omitempty"`
	Egress    bool              `cbor:"egress,omitempty" json:"egress,omitempty"`
	Hosts     []string          `cbor:"hosts,omitempty" json:"hosts,omitempty"`
	Avoid     []string          `cbor:"avoid,omitempty" json:"avoid,omitempty"`
	Labels    map[string]string `cbor:"labels,omitempty" json:"labels,omitempty"`
	Policy    map[string]string `cbor:"policy,omitempty" json:"policy,omitempty"`
	Heads     []string          `cbor:"heads" json:"heads"`
	Problems  []string          `cbor:"problems,omitempty" json:"problems,omitempty"`
}

// Desired reads the current document. Replicas defaults to 1 when unset.
func (d *Doc) Desired() Desired {
	out := Desired{Owner: d.owner.String(), Service: d.service, Replicas: 1}
	for _, h := range d.heads {
		out.Heads = append(out.Heads, h.String())
	}
	var keys []string
	flat := d.current()
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bad := func(k, v, want string) {
		out.Problems = append(out.Problems, fmt.Sprintf("%s: %s is not %s", DisplayPath(k), v, want))
	}
	num := func(k, v string, dst *int64) {
		t, s, _ := strings.Cut(v, ":")
		var n int64
		var err error
		switch t {
		case "i":
			n, err = strconv.ParseInt(s, 10, 64)
		case "u":
			var u uint64
			u, err = strconv.ParseUint(s, 10, 63)
			n = int64(u)
		case "f":
			var f float64
			f, err = strconv.ParseFloat(s, 64)
			if err == nil && (f != float64(int64(f)) || f < 0) {
				err = fmt.Errorf("fraction")
			}
			n = int64(f)
		default:
			err = fmt.Errorf("type")
		}
		if err != nil || n < 0 {
			bad(k, v, "a whole number")
			return
		}
		*dst = n
	}
	str := func(k, v string, dst *string) {
		if !strings.HasPrefix(v, "s:") {
			bad(k, v, "a string")
			return
		}
		*dst = v[2:]
	}
	for _, k := range keys {
		v := flat[k]
		seg := strings.Split(k, Sep)
		switch {
		case k == "removed":
			out.Removed = v == "b:true"
		case len(seg) < 2 || seg[0] != "spec" || v == "{}":
		case len(seg) == 2 && seg[1] == "bundle":
			str(k, v, &out.Bundle)
		case len(seg) == 2 && seg[1] == "version":
			str(k, v, &out.Version)
		case len(seg) == 2 && seg[1] == "replicas":
			num(k, v, &out.Replicas)
		case len(seg) == 3 && seg[1] == "resources":
			switch seg[2] {
			case "cpu":
				num(k, v, &out.CPU)
			case "memory":
				num(k, v, &out.Memory)
			case "disk":
				num(k, v, &out.Disk)
			case "gpu":
				num(k, v, &out.GPU)
			}
		case len(seg) == 4 && seg[1] == "resources" && seg[2] == "network":
			switch seg[3] {
			case "bandwidth":
				num(k, v, &out.Bandwidth)
			case "egress":
				out.Egress = v == "b:true"
			}
		case len(seg) == 4 && seg[1] == "placement" && seg[2] == "hosts" && v == "b:true":
			out.Hosts = append(out.Hosts, seg[3])
		case len(seg) == 4 && seg[1] == "placement" && seg[2] == "avoid" && v == "b:true":
			out.Avoid = append(out.Avoid, seg[3])
		case len(seg) == 4 && seg[1] == "placement" && seg[2] == "labels":
			var s string
			str(k, v, &s)
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[seg[3]] = s
		case len(seg) == 3 && seg[1] == "policy":
			if out.Policy == nil {
				out.Policy = map[string]string{}
			}
			_, s, _ := strings.Cut(v, ":")
			out.Policy[seg[2]] = s
		}
	}
	return out
}
