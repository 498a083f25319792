// go-longpoll follows one parameter through config-service's local HTTP API, with the standard library only.
//
// It blocks in a long poll (GET /v1/config/{name}?wait=30s with If-None-Match: the version it holds), so a
// change pushed to the sidecar reaches it as soon as the sidecar applied it, with no polling interval.
// Each new value is printed as one line:
//
//	config name=/config-service/acme/orders/db_url version=3 value=postgres://new
//
// Settings (environment):
//
//	CONFIG_HTTP   base URL of the sidecar's local HTTP API (default http://127.0.0.1:2773)
//	CONFIG_NAME   the parameter to follow (required), e.g. /config-service/acme/orders/db_url
//	CONFIG_WAIT   how long one long poll waits (default 30s)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

type parameter struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Version int64  `json:"version"`
	Type    string `json:"type"`
}

func getenv(key, fallback string) string {
	if value := os.Getenv(key); value != "" {
		return value
	}
	return fallback
}

func main() {
	base := strings.TrimRight(getenv("CONFIG_HTTP", "http://127.0.0.1:2773"), "/")
	name := os.Getenv("CONFIG_NAME")
	if name == "" {
		log.Fatal("go-longpoll: set CONFIG_NAME to the parameter to follow")
	}
	wait := getenv("CONFIG_WAIT", "30s")
	endpoint := base + "/v1/config/" + strings.TrimPrefix(name, "/")
	// The first request answers at once; the next ones hold until the version differs from the one held.
	longPoll := endpoint + "?wait=" + url.QueryEscape(wait)
	// The client timeout must outlast the long poll.
	client := &http.Client{Timeout: 10 * time.Minute}
	etag := ""
	for {
		target := endpoint
		if etag != "" {
			target = longPoll
		}
		request, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			log.Fatalf("go-longpoll: %v", err)
		}
		if etag != "" {
			request.Header.Set("If-None-Match", etag)
		}
		response, err := client.Do(request)
		if err != nil {
			log.Printf("go-longpoll: %v (retrying in 1s)", err)
			time.Sleep(time.Second)
			continue
		}
		body, err := io.ReadAll(response.Body)
		response.Body.Close()
		switch {
		case err != nil:
			log.Printf("go-longpoll: reading the answer: %v", err)
			time.Sleep(time.Second)
		case response.StatusCode == http.StatusNotModified:
			// The long poll timed out with nothing new: ask again.
		case response.StatusCode == http.StatusOK:
			var p parameter
			if err := json.Unmarshal(body, &p); err != nil {
				log.Printf("go-longpoll: bad JSON: %v", err)
				time.Sleep(time.Second)
				continue
			}
			etag = response.Header.Get("ETag")
			fmt.Printf("config name=%s version=%d value=%s\n", p.Name, p.Version, p.Value)
		default:
			// 404 (not there yet), 503 (sidecar still loading), 403 (a withheld SecureString).
			log.Printf("go-longpoll: HTTP %d: %s", response.StatusCode, strings.TrimSpace(string(body)))
			etag = response.Header.Get("ETag")
			time.Sleep(time.Second)
		}
	}
}
