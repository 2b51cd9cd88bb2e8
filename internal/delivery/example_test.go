package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/httpclient"
)

// A sink hands the engine one job per event: events of one key reach the endpoint in order, and a
// key whose job failed keeps its later events for the next attempt.
func ExampleEngine_Run() {
	e := delivery.New(delivery.Config{Concurrency: 32}, delivery.NewMetrics(prometheus.NewRegistry()))
	post := func(status int) func(context.Context) error {
		return func(context.Context) error {
			if out := httpclient.Classify(status); out != httpclient.Delivered {
				return &httpclient.Error{Connector: "crm", Endpoint: "crm.example", Status: status, Outcome: out}
			}
			return nil
		}
	}
	errs := e.Run(context.Background(), "crm.example#1a2b3c4d", []delivery.Job{
		{Send: post(http.StatusOK)},                      // a lead: no order
		{Key: "sa-1", Send: post(http.StatusBadGateway)}, // fails: retried later
		{Key: "sa-1", Send: post(http.StatusOK)},         // not sent before it
		{Key: "sa-2", Send: post(http.StatusOK)},
	})
	for i, err := range errs {
		fmt.Println(i, httpclient.OutcomeOf(err), errors.Is(err, delivery.ErrSkipped))
	}
	// Output:
	// 0 delivered false
	// 1 retry false
	// 2 retry true
	// 3 delivered false
}
