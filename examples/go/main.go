// The seed's Go net/http example, with the key from the environment. Run: go run ./examples/go
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
)

func getenv(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func main() {
	licenseKey := os.Getenv("LICENSE_KEY")
	apiURL := getenv("API_URL", "http://localhost:7100") + "/v1/listen"

	payload := map[string]string{
		"url": getenv("AUDIO_URL", "https://example.com/audio.wav"),
	}
	jsonData, _ := json.Marshal(payload)

	req, _ := http.NewRequest("POST", apiURL, bytes.NewBuffer(jsonData))
	req.Header.Set("Authorization", "Token "+licenseKey)
	req.Header.Set("Content-Type", "application/json")

	client := &http.Client{}
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()

	var result map[string]interface{}
	json.NewDecoder(resp.Body).Decode(&result)
	fmt.Println(result)
}
