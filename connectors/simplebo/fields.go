package simplebo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strings"
)

// ErrUnsupportedContentType is returned by ParseFields (and DecodeEvent) for a body that is
// neither a form nor JSON.
var ErrUnsupportedContentType = errors.New("content type must be application/x-www-form-urlencoded, multipart/form-data or application/json")

// ParseFields reads the flat name → value fields of a request body the way Simplébo sends them
// (application/x-www-form-urlencoded, the default when contentType is empty) or may
// (multipart/form-data, or a JSON object of strings, numbers and nulls). A repeated name keeps
// its first value; file parts are ignored; values are trimmed of surrounding spaces. Errors name
// no value.
func ParseFields(contentType string, body []byte) (map[string]string, error) {
	mt, params := "application/x-www-form-urlencoded", map[string]string(nil)
	if strings.TrimSpace(contentType) != "" {
		var err error
		mt, params, err = mime.ParseMediaType(contentType)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return nil, fmt.Errorf("%w (got an unreadable one)", ErrUnsupportedContentType)
		}
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return parseForm(body)
	case "multipart/form-data":
		return parseMultipart(body, params["boundary"])
	case "application/json":
		return parseJSON(body)
	}
	return nil, fmt.Errorf("%w (got %.40q)", ErrUnsupportedContentType, mt)
}

func parseForm(body []byte) (map[string]string, error) {
	q, err := url.ParseQuery(string(body))
	if err != nil {
		// ParseQuery's error quotes the bad part, which may hold personal data.
		return nil, errors.New("malformed form body")
	}
	f := make(map[string]string, len(q))
	for k, vs := range q {
		if len(vs) > 0 {
			f[k] = strings.TrimSpace(vs[0])
		}
	}
	return f, nil
}

func parseMultipart(body []byte, boundary string) (map[string]string, error) {
	if boundary == "" {
		return nil, errors.New("multipart body without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	f := map[string]string{}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return nil, errors.New("malformed multipart body")
		}
		name := p.FormName()
		if name == "" || p.FileName() != "" {
			continue
		}
		// The whole body is already in memory and bounded: a part cannot be larger.
		v, err := io.ReadAll(p)
		if err != nil {
			return nil, errors.New("malformed multipart body")
		}
		if _, dup := f[name]; !dup {
			f[name] = strings.TrimSpace(string(v))
		}
	}
}

func parseJSON(body []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New("malformed JSON body: want one object")
	}
	if raw == nil {
		return nil, errors.New("malformed JSON body: want one object")
	}
	f := make(map[string]string, len(raw))
	for k, m := range raw {
		switch {
		case len(m) > 0 && m[0] == '"':
			var s string
			if err := json.Unmarshal(m, &s); err != nil {
				return nil, fmt.Errorf("field %.40q: malformed string", k)
			}
			f[k] = strings.TrimSpace(s)
		case string(m) == "null":
			f[k] = ""
		default:
			var n json.Number
			if err := json.Unmarshal(m, &n); err != nil {
				return nil, fmt.Errorf("field %.40q: want a string, a number or null", k)
			}
			f[k] = n.String()
		}
	}
	return f, nil
}
