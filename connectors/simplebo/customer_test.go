package simplebo_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/simplebo"
)

func TestValidSIRET(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"73282932000074", true},
		{"44306184100047", true},
		{"35600000000048", true},  // La Poste's head office: Luhn holds
		{"35600000049837", true},  // a La Poste establishment: Luhn fails, digit sum 45
		{"35600000049838", false}, // digit sum 46
		{"73282932000075", false},
		{"182918291", false}, // the partner's own example: a SIREN-length number
		{"", false},
		{"7328293200007", false},
		{"732829320000740", false},
		{"732 829 320 00074", false},
		{"7328293200007a", false},
		{"７3282932000074", false}, // a full-width digit
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, simplebo.ValidSIRET(tc.in), "ValidSIRET(%q)", tc.in)
	}
}

// luhn is the check written the other way round, from the right, as a reference.
func luhn(s string) bool {
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func FuzzValidSIRET(f *testing.F) {
	for _, s := range []string{"73282932000074", "35600000049837", "182918291", "", "abcdefghijklmn"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := simplebo.ValidSIRET(s)
		digits := len(s) == 14
		for i := range len(s) {
			digits = digits && s[i] >= '0' && s[i] <= '9'
		}
		if !digits {
			if got {
				t.Fatalf("ValidSIRET(%q) = true for something that is not 14 digits", s)
			}
			return
		}
		sum := 0
		for i := range len(s) {
			sum += int(s[i] - '0')
		}
		want := luhn(s) || (s[:9] == "356000000" && sum%5 == 0)
		if got != want {
			t.Fatalf("ValidSIRET(%q) = %v, want %v", s, got, want)
		}
	})
}

func TestCustomerValidate(t *testing.T) {
	t.Parallel()
	full := simplebo.Customer{ClientID: "g", Lastname: "L", Email: "e@x.fr", PhoneNumber1: "01", Zipcode: "75001", City: "Paris", Country: "FR"}
	require.NoError(t, full.Validate(), "typology 0 is a value")
	tests := []struct {
		name   string
		mutate func(*simplebo.Customer)
		want   string
	}{
		{"client_id", func(c *simplebo.Customer) { c.ClientID = "" }, "missing client_id"},
		{"blank lastname", func(c *simplebo.Customer) { c.Lastname = "  " }, "missing lastname"},
		{"several", func(c *simplebo.Customer) { c.Email, c.PhoneNumber1, c.Country = "", "", "" }, "missing email, phone_number1, country"},
		{"zipcode and city", func(c *simplebo.Customer) { c.Zipcode, c.City = "", "" }, "missing zipcode, city"},
		{"negative typology", func(c *simplebo.Customer) { c.Typology = -1 }, "typology is negative"},
	}
	for _, tc := range tests {
		c := full
		tc.mutate(&c)
		err := c.Validate()
		require.ErrorIs(t, err, simplebo.ErrInvalidCustomer, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
	}
}

func TestCustomerFromFieldsRoundTrip(t *testing.T) {
	t.Parallel()
	cu := customer("g-rt")
	v := cu.Values("P", "LBA")
	f := map[string]string{}
	for k := range v {
		f[k] = v.Get(k)
	}
	got, err := simplebo.CustomerFromFields(f)
	require.NoError(t, err)
	require.Equal(t, cu, got)

	f["typology"] = "douze"
	_, err = simplebo.CustomerFromFields(f)
	require.ErrorIs(t, err, simplebo.ErrInvalidCustomer)
	delete(f, "typology")
	_, err = simplebo.CustomerFromFields(f)
	require.ErrorIs(t, err, simplebo.ErrInvalidCustomer)
}
