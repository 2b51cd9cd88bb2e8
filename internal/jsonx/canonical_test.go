package jsonx

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

const seedLead = `{"nom":"Doe","prenom":"John","civilite":"M.","tel":"0102030405","email":"john.doe@example.com",` +
	`"ville":"paris","code_postal":"75001","statut":"prospect","horaire_rappel":"après-midi",` +
	`"formation":"Développement Web","client":"XYZ Formations","id_client":"1234"}`

// manyKeys is an object with more members than the insertion sort takes,
// in reverse order and with duplicates.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := n; i > 0; i-- {
		if i < n {
			b.WriteByte(',')
		}
		k := string(rune('a' + i%26))
		b.WriteString(`"` + strings.Repeat(k, 1+i%11) + `":` + string(rune('0'+i%10)))
	}
	b.WriteByte('}')
	return b.String()
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string // "" means Canonical gives up
	}{
		{"seed lead", seedLead, `{"civilite":"M.","client":"XYZ Formations","code_postal":"75001",` +
			`"email":"john.doe@example.com","formation":"Développement Web","horaire_rappel":"après-midi",` +
			`"id_client":"1234","nom":"Doe","prenom":"John","statut":"prospect","tel":"0102030405","ville":"paris"}`},
		{"sorted already", `{"a":1,"b":2}`, `{"a":1,"b":2}`},
		{"unsorted keys", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"byte order, not alphabetical", `{"a":1,"B":2,"é":3,"_":4,"A":5}`, `{"A":5,"B":2,"_":4,"a":1,"é":3}`},
		{"prefix sorts first", `{"abcdefghij":1,"abcdefgh":2,"abcdefghi":3,"abc":4,"":5}`, `{"":5,"abc":4,"abcdefgh":2,"abcdefghi":3,"abcdefghij":1}`},
		{"long shared prefix", `{"abcdefgh_z":1,"abcdefgh_a":2}`, `{"abcdefgh_a":2,"abcdefgh_z":1}`},
		{"duplicate keeps the last", `{"a":1,"a":2}`, `{"a":2}`},
		{"duplicates among others", `{"b":1,"a":2,"b":[3],"c":4,"a":{"y":1,"x":2},"b":5}`, `{"a":{"x":2,"y":1},"b":5,"c":4}`},
		{"duplicate in order", `{"a":1,"b":2,"b":3}`, `{"a":1,"b":3}`},
		{"duplicate of an empty key", `{"":1,"":2}`, `{"":2}`},
		{"nested", `{"z":[{"y":1,"x":2},[]],"a":{},"m":{"b":{"d":null,"c":true}}}`, `{"a":{},"m":{"b":{"c":true,"d":null}},"z":[{"x":2,"y":1},[]]}`},
		{"nested after unsorted", `{"b":{"y":1,"x":2},"a":[{"d":4,"c":3}]}`, `{"a":[{"c":3,"d":4}],"b":{"x":2,"y":1}}`},
		{"array of objects", `[{"b":1,"a":2},{"d":3,"c":4}]`, `[{"a":2,"b":1},{"c":4,"d":3}]`},
		{"whitespace", " \t\r\n{ \"b\" : [ 1 , 2 ] ,\n\"a\" :\t{ } , \"c\" : [ ] }\r\n ", `{"a":{},"b":[1,2],"c":[]}`},
		{"numbers", `[0,-0,1,-1,10,123456789012345678901234567890,0.5,-0.0,1.25e10,1E3,1e+3,1e-3,1E-0,0e0,-12.340e+05]`,
			`[0,-0,1,-1,10,123456789012345678901234567890,0.5,-0.0,1.25e10,1E3,1e+3,1e-3,1E-0,0e0,-12.340e+05]`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"utf-8", `{"ville":"Saint-Étienne","emoji":"😀","cjk":"漢字","fffd":"�"}`, `{"cjk":"漢字","emoji":"😀","fffd":"�","ville":"Saint-Étienne"}`},
		{"DEL is not escaped", "\"\x7f\"", "\"\x7f\""},
		{"html kept", `{"f":"<Compta & Gestion>"}`, `{"f":"<Compta & Gestion>"}`},
		{"top-level string", ` "x" `, `"x"`},
		{"top-level number", "42\n", `42`},
		{"top-level null", `null`, `null`},
		{"empty containers", `[{},[],""]`, `[{},[],""]`},

		// Left to encoding/json: valid, but not copied as is.
		{"escape in a string", `{"a":"\u00e9"}`, ""},
		{"escape in a key", `{"\u0061":1}`, ""},
		{"escaped slash", `"\/"`, ""},
		{"invalid utf-8", "\"a\xffb\"", ""},
		{"surrogate in utf-8", "\"\xed\xa0\x80\"", ""},
		{"truncated rune", "\"\xc3\"", ""},
		{"line separator", "\"a\u2028b\"", ""},
		{"paragraph separator", "{\"a\u2029\":1}", ""},
		{"too deep", strings.Repeat("[", 65) + strings.Repeat("]", 65), ""},
		// Errors.
		{"empty", ``, ""},
		{"blank", " \n", ""},
		{"control character", "\"a\tb\"", ""},
		{"unterminated string", `"abc`, ""},
		{"truncated object", `{"a":`, ""},
		{"truncated array", `[1,`, ""},
		{"missing colon", `{"a" 1}`, ""},
		{"missing comma", `{"a":1 "b":2}`, ""},
		{"trailing comma in object", `{"a":1,}`, ""},
		{"trailing comma in array", `[1,]`, ""},
		{"leading comma", `[,1]`, ""},
		{"non-string key", `{1:2}`, ""},
		{"mismatched brackets", `[1}`, ""},
		{"trailing value", `{"a":1}{"b":2}`, ""},
		{"trailing garbage", `{"a":1} x`, ""},
		{"trailing bracket", `{"a":1}]`, ""},
		{"leading zero", `01`, ""},
		{"leading zero in array", `[01]`, ""},
		{"bare minus", `-`, ""},
		{"plus sign", `+1`, ""},
		{"bare fraction", `.5`, ""},
		{"empty fraction", `1.`, ""},
		{"empty exponent", `1e`, ""},
		{"signed empty exponent", `1e+`, ""},
		{"hex", `0x1`, ""},
		{"NaN", `NaN`, ""},
		{"truncated literal", `tru`, ""},
		{"literal with suffix", `nullx`, ""},
		{"capitalised literal", `True`, ""},
		{"single quotes", `{'a':1}`, ""},
		{"byte order mark", "\ufeff{}", ""},
		{"other whitespace", "\v1", ""},
		{"nul after value", "1\x00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			ref, refErr := CanonicalReference(raw)
			got, ok := Canonical([]byte("x"), raw)
			if tt.want == "" {
				if ok {
					t.Fatalf("Canonical(%q) = %q, want it to give up", raw, got)
				}
				if string(got) != "x" {
					t.Errorf("Canonical(%q) gave up but returned %q, want dst unchanged", raw, got)
				}
				return
			}
			if refErr != nil {
				t.Fatalf("encoding/json rejects %q: %v", raw, refErr)
			}
			if !ok {
				t.Fatalf("Canonical(%q) gave up, want %q", raw, ref)
			}
			if string(got) != "x"+string(ref) {
				t.Fatalf("Canonical(%q) = %q, encoding/json = %q", raw, got[1:], ref)
			}
			if string(ref) != tt.want {
				t.Errorf("encoding/json writes %s, the table says %s", ref, tt.want)
			}
		})
	}
}

// TestCanonicalGenerated checks generated inputs too long for the table:
// objects past the insertion sort's size and nesting up to the limit.
func TestCanonicalGenerated(t *testing.T) {
	inputs := []string{manyKeys(16), manyKeys(17), manyKeys(300)}
	for _, depth := range []int{1, 2, 63, 64} {
		inputs = append(inputs, strings.Repeat(`{"b":0,"a":[`, depth/2)+strings.Repeat("[", depth%2)+"0"+
			strings.Repeat("]", depth%2)+strings.Repeat("]}", depth/2))
	}
	for _, raw := range inputs {
		want := mustReference(t, raw)
		got, ok := Canonical(nil, []byte(raw))
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("Canonical(%q) = %q, %v; encoding/json = %q", raw, got, ok, want)
		}
	}
}

// TestCanonicalRandom compares Canonical with encoding/json on generated
// documents, which reach the sorting and duplicate paths far more often than
// byte-level fuzzing does: few distinct keys sharing long prefixes, random
// layout, and now and then a string Canonical must give up on.
func TestCanonicalRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"", "a", "b", "ab", "abcdefgh", "abcdefghi", "abcdefgz", "é", "Z", "nom", "prenom", "~"}
	strs := append(keys, "Développement Web", "<&>", "\x7f", "😀", "a\\n", "\u00e9", "\u2028", "\xff")
	space := func(b *strings.Builder) {
		for rng.IntN(4) == 0 {
			b.WriteByte(" \t\r\n"[rng.IntN(4)])
		}
	}
	numbers := []string{"0", "-0", "12", "-3.25", "1e9", "1E-2", "6.02e+23", "123456789012345678901234567890"}
	var gen func(b *strings.Builder, depth int)
	gen = func(b *strings.Builder, depth int) {
		space(b)
		switch k := rng.IntN(10); {
		case k < 3 && depth < 4:
			b.WriteByte('{')
			n := rng.IntN(20)
			for i := 0; i < n; i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				space(b)
				b.WriteString(`"` + keys[rng.IntN(len(keys))] + `"`)
				space(b)
				b.WriteByte(':')
				gen(b, depth+1)
			}
			space(b)
			b.WriteByte('}')
		case k < 5 && depth < 4:
			b.WriteByte('[')
			n := rng.IntN(5)
			for i := 0; i < n; i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				gen(b, depth+1)
			}
			space(b)
			b.WriteByte(']')
		case k < 7:
			if rng.IntN(20) == 0 {
				b.WriteString(`"` + strs[rng.IntN(len(strs))] + `"`)
			} else {
				b.WriteString(`"` + keys[rng.IntN(len(keys))] + `"`)
			}
		case k < 9:
			b.WriteString(numbers[rng.IntN(len(numbers))])
		default:
			b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
		}
		space(b)
	}
	var fast int
	for range 5000 {
		var b strings.Builder
		gen(&b, 0)
		raw := []byte(b.String())
		ref, refErr := CanonicalReference(raw)
		got, ok := Canonical(nil, raw)
		if refErr != nil {
			t.Fatalf("generated invalid JSON %q: %v", raw, refErr)
		}
		if ok {
			fast++
			if !bytes.Equal(got, ref) {
				t.Fatalf("Canonical(%q) = %q, encoding/json = %q", raw, got, ref)
			}
		}
	}
	t.Logf("Canonical handled %d of 5000 documents", fast)
	if fast < 2500 {
		t.Errorf("Canonical handled only %d of 5000 documents", fast)
	}
}

// TestCanonicalAllocs guards the point of Canonical: with room in dst, a
// typical payload costs no allocation at all.
func TestCanonicalAllocs(t *testing.T) {
	raw := []byte(seedLead)
	dst := make([]byte, 0, 2*len(raw))
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := Canonical(dst, raw); !ok {
			t.Fatal("Canonical gave up")
		}
	}); n != 0 {
		t.Errorf("Canonical allocates %v times per call, want 0", n)
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		seedLead,
		`{"nom":"Dupont","prenom":"Jean","civilite":"M.","tel":"0102030405","email":"jean.dupont@example.fr",` +
			`"ville":"paris","code_postal":"75001","formation":"Comptabilité","horaire_rappel":"après-midi",` +
			`"statut":"prospect","client":"Passerelle SAS","id_client":"42","extra":{"utm":["a","b"],"score":12.5e-1}}`,
		"{\n  \"id_client\": \"42\", \"client\": \"Passerelle SAS\",\n  \"formation\": \"Comptabilit\\u00e9\"\n}\n",
		`{"b":1,"a":[1,2.50,"x"]}`, `{"a":1,"a":2}`, `{"b":1,"a":2,"b":3,"a":{"d":1,"c":2,"d":[]}}`,
		`{"abcdefghij":1,"abcdefgh":2,"abcdefghi":3}`, `{"":0,"":1}`, manyKeys(40),
		`[-0,0.0,1E+2,1e-2,123456789012345678901234567890]`, `[true,false,null,{},[],""]`,
		`"é\u00e9"`, "\"\xff\"", "\"\u2028\"", `{"<":">&"}`, "\"\x7f\"",
		``, ` `, `{`, `[1,]`, `01`, `1.`, `-`, `{"a":1}x`, `{"a":1}]`, `nul`, "\ufeff1",
		strings.Repeat("[", 64) + strings.Repeat("]", 64),
		strings.Repeat("[", 65) + strings.Repeat("]", 65),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ref, refErr := CanonicalReference(raw)
		got, ok := Canonical(nil, raw)
		switch {
		case ok && refErr != nil:
			t.Fatalf("Canonical(%q) = %q, but encoding/json fails: %v", raw, got, refErr)
		case ok && !bytes.Equal(got, ref):
			t.Fatalf("Canonical(%q) = %q, encoding/json = %q", raw, got, ref)
		case !ok && got != nil:
			t.Fatalf("Canonical(nil, %q) gave up but returned %q", raw, got)
		}
	})
}

func BenchmarkCanonical(b *testing.B) {
	for _, bb := range []struct{ name, raw string }{
		{"lead", seedLead},
		{"sorted", string(mustReference(b, seedLead))},
		{"nested", `{"lead":` + seedLead + `,"tags":["a","b","c"],"meta":{"z":1,"y":2.5,"x":null,"w":true}}`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			raw := []byte(bb.raw)
			dst := make([]byte, 0, 2*len(raw))
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := Canonical(dst, raw); !ok {
					b.Fatal("Canonical gave up")
				}
			}
		})
	}
}

func mustReference(tb testing.TB, raw string) []byte {
	out, err := CanonicalReference([]byte(raw))
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
