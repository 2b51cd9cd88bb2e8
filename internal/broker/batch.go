package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// MetaBatch marks a message that carries several messages; its value is how many.
const MetaBatch = "batch"

// Batcher groups the messages that concurrent callers publish to one topic into a single broker
// message, the way a database groups commits: while one batch waits for its acknowledgement, the
// next one fills. Each caller still returns only once the batch holding its message is
// acknowledged, so an answer sent after Publish is as durable as with one message per publish,
// for a fraction of the broker's work per message. Payloads must be JSON (they are embedded as is).
type Batcher struct {
	pub   *Publisher
	topic string
	max   int
	in    chan *batchEntry
	quit  chan struct{}
	wg    sync.WaitGroup

	mu     sync.RWMutex
	closed bool
}

type batchEntry struct {
	msg  *message.Message
	done chan error
}

// ErrBatcherClosed is returned by Publish after Close.
var ErrBatcherClosed = errors.New("broker: batcher closed")

// NewBatcher starts workers flushers publishing batches of at most maxBatch messages to topic.
func NewBatcher(pub *Publisher, topic string, maxBatch, workers int) *Batcher {
	b := &Batcher{pub: pub, topic: topic, max: maxBatch, in: make(chan *batchEntry, maxBatch*workers), quit: make(chan struct{})}
	for range workers {
		b.wg.Add(1)
		go b.flush()
	}
	return b
}

// Publish adds msg to the next batch and waits for that batch's acknowledgement.
func (b *Batcher) Publish(ctx context.Context, msg *message.Message) error {
	e := &batchEntry{msg: msg, done: make(chan error, 1)}
	// The read lock keeps Close from closing between the check and the send: an entry queued
	// after the workers stopped would never be answered.
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrBatcherClosed
	}
	select {
	case b.in <- e:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-e.done:
		return err
	case <-ctx.Done():
		// The message may still be stored: a caller that retries sends the same event id, which
		// the pipeline recognises.
		return ctx.Err()
	}
}

// Close stops taking messages and waits for the batches in flight.
func (b *Batcher) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.quit)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Batcher) flush() {
	defer b.wg.Done()
	batch := make([]*batchEntry, 0, b.max)
	for {
		batch = batch[:0]
		select {
		case e := <-b.in:
			batch = append(batch, e)
		case <-b.quit:
			b.failQueued()
			return
		}
	fill:
		for len(batch) < b.max {
			select {
			case e := <-b.in:
				batch = append(batch, e)
			default:
				break fill
			}
		}
		err := b.publish(batch)
		for _, e := range batch {
			e.done <- err
		}
	}
}

// failQueued answers the callers still queued at Close, so none waits forever.
func (b *Batcher) failQueued() {
	for {
		select {
		case e := <-b.in:
			e.done <- ErrBatcherClosed
		default:
			return
		}
	}
}

type batchItem struct {
	UUID     string            `json:"uuid"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Payload  json.RawMessage   `json:"payload,omitempty"`
}

func (b *Batcher) publish(batch []*batchEntry) error {
	if len(batch) == 1 {
		m := batch[0].msg
		return b.pub.PublishContext(context.Background(), b.topic, m)
	}
	// Written by hand: json.Marshal would re-validate and compact every payload, which costs more
	// than the rest of the batch.
	size := 2
	for _, e := range batch {
		size += len(e.msg.Payload) + 256
	}
	payload := make([]byte, 0, size)
	payload = append(payload, '[')
	for i, e := range batch {
		if i > 0 {
			payload = append(payload, ',')
		}
		head, err := json.Marshal(batchItem{UUID: e.msg.UUID, Metadata: e.msg.Metadata})
		if err != nil {
			return fmt.Errorf("broker: encode batch: %w", err)
		}
		payload = append(payload, head[:len(head)-1]...) // without its closing brace
		payload = append(payload, `,"payload":`...)
		payload = append(payload, e.msg.Payload...)
		payload = append(payload, '}')
	}
	payload = append(payload, ']')
	// A fresh id: the batch as a whole is new even when some of its messages were seen before.
	m := message.NewMessage(watermill.NewUUID(), payload)
	m.Metadata.Set(MetaBatch, strconv.Itoa(len(batch)))
	return b.pub.PublishContext(context.Background(), b.topic, m)
}

// Unbatch returns the messages a broker message carries: itself when it is not a batch.
func Unbatch(msg *message.Message) ([]*message.Message, error) {
	if msg.Metadata.Get(MetaBatch) == "" {
		return []*message.Message{msg}, nil
	}
	var items []batchItem
	if err := json.Unmarshal(msg.Payload, &items); err != nil {
		return nil, fmt.Errorf("broker: decode batch %s: %w", msg.UUID, err)
	}
	out := make([]*message.Message, len(items))
	for i, it := range items {
		m := message.NewMessage(it.UUID, []byte(it.Payload))
		for k, v := range it.Metadata {
			m.Metadata.Set(k, v)
		}
		m.SetContext(msg.Context())
		out[i] = m
	}
	return out, nil
}

// BatchSize is how many messages msg stands for.
func BatchSize(msg *message.Message) int {
	if n, err := strconv.Atoi(msg.Metadata.Get(MetaBatch)); err == nil && n > 0 {
		return n
	}
	return 1
}
