// PagerDuty's webhook signature check, go-pagerduty webhookv3.VerifySignature, over test vectors.
//
// stdin: one JSON object per line, {"secret": "...", "body": BASE64, "signature": BASE64}.
// Each vector becomes the *http.Request VerifySignature reads: the body as sent and the
// signature bytes as the X-PagerDuty-Signature header value.
// stdout: one line per vector, "accept" or "refuse".
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"

	"github.com/PagerDuty/go-pagerduty/webhookv3"
)

type vector struct {
	Secret    string `json:"secret"`
	Body      string `json:"body"`
	Signature string `json:"signature"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		line := bytes.TrimSpace(in.Bytes())
		if len(line) == 0 {
			continue
		}
		var v vector
		if err := json.Unmarshal(line, &v); err != nil {
			fmt.Fprintln(os.Stderr, "bad vector:", err)
			os.Exit(2)
		}
		body, err1 := base64.StdEncoding.DecodeString(v.Body)
		signature, err2 := base64.StdEncoding.DecodeString(v.Signature)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "bad base64 in vector")
			os.Exit(2)
		}
		req := httptest.NewRequest("POST", "/v1/ingest/pagerduty", bytes.NewReader(body))
		req.Header.Set("X-PagerDuty-Signature", string(signature))
		if webhookv3.VerifySignature(req, v.Secret) == nil {
			fmt.Fprintln(out, "accept")
		} else {
			fmt.Fprintln(out, "refuse")
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "reading vectors:", err)
		os.Exit(2)
	}
}
