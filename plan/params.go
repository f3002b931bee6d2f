package plan

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Params is the typed parameters of one kind, declared next to the kind's planner
// (build_*.go): the planner fills the struct and EncodeParams
// writes it into Step.Params; the executor reads it back with DecodeParams. Both sides name
// the same Go fields, so the compiler checks what passes between plan and apply, while the
// plan file keeps plain strings a reviewer can read.
//
// Fields carry a `param:"key"` tag. A string is written as is, a []string joined with
// commas, a bool only when true ("true"), and a map[string][]string with a tag ending in
// "@" one key per entry ("used_by@m2"). A string tagged `param:"key,omitempty"` is left out
// when empty, so a field added later leaves the plans that do not need it as they were.
type Params interface {
	// ParamsKind is the kind whose steps carry these params.
	ParamsKind() string
}

// EncodeParams writes p as a step's Params.
func EncodeParams(p Params) map[string]string {
	out := map[string]string{}
	v := reflect.ValueOf(p)
	for i, f := range reflect.VisibleFields(v.Type()) {
		key, opt, _ := strings.Cut(f.Tag.Get("param"), ",")
		fv := v.Field(i)
		switch x := fv.Interface().(type) {
		case string:
			if x != "" || opt != "omitempty" {
				out[key] = x
			}
		case []string:
			out[key] = strings.Join(x, ",")
		case bool:
			if x {
				out[key] = "true"
			}
		case map[string][]string:
			for k, vs := range x {
				out[key+k] = strings.Join(vs, ",")
			}
		}
	}
	return out
}

// DecodeParams reads the params of st, which must be a step of T's kind. A key T does not
// know is an error: the plan was made by another version, or edited.
func DecodeParams[T Params](st Step) (T, error) {
	var p T
	if st.Kind != p.ParamsKind() {
		return p, fmt.Errorf("step %s is a %s step, not %s", st.ID, st.Kind, p.ParamsKind())
	}
	if err := checkParamKeys(st, reflect.TypeOf(p)); err != nil {
		return p, err
	}
	v := reflect.ValueOf(&p).Elem()
	for i, f := range reflect.VisibleFields(v.Type()) {
		key, _, _ := strings.Cut(f.Tag.Get("param"), ",")
		fv := v.Field(i)
		switch fv.Interface().(type) {
		case string:
			fv.SetString(st.Params[key])
		case []string:
			fv.Set(reflect.ValueOf(splitList(st.Params[key])))
		case bool:
			fv.SetBool(st.Params[key] == "true")
		case map[string][]string:
			m := map[string][]string{}
			for k, val := range st.Params {
				if host, ok := strings.CutPrefix(k, key); ok && host != "" {
					m[host] = splitList(val)
				}
			}
			if len(m) > 0 {
				fv.Set(reflect.ValueOf(m))
			}
		}
	}
	return p, nil
}

// checkParamKeys refuses a key that t (a params struct, or nil for a kind without params)
// does not declare.
func checkParamKeys(st Step, t reflect.Type) error {
	var unknown []string
	for k := range st.Params {
		if !declares(t, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("%w: step %s has params this mastershrink does not know (%s); make the plan again with this version",
		ErrStepKind, st.ID, strings.Join(unknown, ", "))
}

func declares(t reflect.Type, key string) bool {
	if t == nil {
		return false
	}
	for _, f := range reflect.VisibleFields(t) {
		tag, _, _ := strings.Cut(f.Tag.Get("param"), ",")
		if tag == key || (strings.HasSuffix(tag, "@") && strings.HasPrefix(key, tag) && len(key) > len(tag)) {
			return true
		}
	}
	return false
}

// splitList is the inverse of a comma join; "" is no element.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
