package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
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
// for a fraction of the broker's work per message.
type Batcher struct {
	pub   *Publisher
	topic string
	max   int
	in    chan *batchEntry
	quit  chan struct{}
	wg    sync.WaitGroup

	mu     sync.RWMutex
	closed bool

	// entries recycles entries with their answer channel: two allocations fewer per message.
	entries sync.Pool
}

type batchEntry struct {
	msg  *message.Message
	done chan error
}

// ErrBatcherClosed is returned by Publish after Close.
var ErrBatcherClosed = errors.New("broker: batcher closed")

// NewBatcher starts workers flushers publishing batches of at most maxBatch messages to topic.
// One flusher makes the largest batches (the next one fills during the round trip); more keep
// several publishes in flight, for a broker far away.
func NewBatcher(pub *Publisher, topic string, maxBatch, workers int) *Batcher {
	b := &Batcher{pub: pub, topic: topic, max: maxBatch, in: make(chan *batchEntry, maxBatch*workers), quit: make(chan struct{})}
	b.entries.New = func() any { return &batchEntry{done: make(chan error, 1)} }
	for range workers {
		b.wg.Add(1)
		go b.flush()
	}
	return b
}

// Publish adds msg to the next batch and waits for that batch's acknowledgement.
func (b *Batcher) Publish(ctx context.Context, msg *message.Message) error {
	e := b.entries.Get().(*batchEntry)
	e.msg = msg
	done := ctx.Done()
	// The read lock keeps Close from closing between the check and the send: an entry queued
	// after the workers stopped would never be answered.
	b.mu.RLock()
	switch {
	case b.closed:
		b.mu.RUnlock()
		b.release(e)
		return ErrBatcherClosed
	case done == nil:
		// A context that is never done (the webhook's): plain channel operations, no select.
		b.in <- e
		b.mu.RUnlock()
		err := <-e.done
		b.release(e)
		return err
	}
	select {
	case b.in <- e:
		b.mu.RUnlock()
	case <-done:
		b.mu.RUnlock()
		b.release(e)
		return ctx.Err()
	}
	select {
	case err := <-e.done:
		b.release(e)
		return err
	case <-done:
		// The message may still be stored: a caller that retries stores it again, and the
		// pipeline must recognise it (the leads pipeline does, by its event id). The entry is not
		// reused: its answer is still to come.
		return ctx.Err()
	}
}

// release recycles an entry that no flusher holds.
func (b *Batcher) release(e *batchEntry) {
	e.msg = nil
	b.entries.Put(e)
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
		// Let the goroutines already runnable (requests about to queue their messages) run
		// first: under load the batch then holds what arrived while this one waited its turn,
		// fewer and larger publishes for no added wait when idle (Gosched returns at once).
		runtime.Gosched()
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

func (b *Batcher) publish(batch []*batchEntry) error {
	if len(batch) == 1 {
		return b.pub.PublishContext(context.Background(), b.topic, batch[0].msg)
	}
	msgs := make([]*message.Message, len(batch))
	for i, e := range batch {
		msgs[i] = e.msg
	}
	return b.pub.PublishContext(context.Background(), b.topic, NewBatch(msgs))
}

// batchFormat is the first byte of a batch payload, so that a later layout can be told apart.
const batchFormat = 1

// NewBatch returns one message carrying msgs, which Unbatch gives back with their UUIDs, metadata
// and payloads. The layout is binary (a format byte, then per message its UUID, its metadata
// pairs and its payload, each length-prefixed with a uvarint): decoding it is slicing, where a
// JSON array would have every payload scanned again.
func NewBatch(msgs []*message.Message) *message.Message {
	size := 1
	for _, m := range msgs {
		size += 3*binary.MaxVarintLen32 + len(m.UUID) + len(m.Payload)
		for k, v := range m.Metadata {
			size += 2*binary.MaxVarintLen32 + len(k) + len(v)
		}
	}
	p := make([]byte, 1, size)
	p[0] = batchFormat
	for _, m := range msgs {
		p = appendField(p, m.UUID)
		p = binary.AppendUvarint(p, uint64(len(m.Metadata)))
		for k, v := range m.Metadata {
			p = appendField(appendField(p, k), v)
		}
		p = binary.AppendUvarint(p, uint64(len(m.Payload)))
		p = append(p, m.Payload...)
	}
	// A fresh id: the batch as a whole is new even when some of its messages were seen before.
	batch := message.NewMessage(watermill.NewUUID(), p)
	batch.Metadata.Set(MetaBatch, strconv.Itoa(len(msgs)))
	return batch
}

func appendField(p []byte, s string) []byte {
	return append(binary.AppendUvarint(p, uint64(len(s))), s...)
}

// Unbatch returns the messages a broker message carries: itself when it is not a batch. The
// payloads share the batch's memory.
func Unbatch(msg *message.Message) ([]*message.Message, error) {
	if !IsBatch(msg) {
		return []*message.Message{msg}, nil
	}
	r := batchReader{p: msg.Payload}
	if len(r.p) == 0 || r.p[0] != batchFormat {
		return nil, fmt.Errorf("broker: batch %s: unknown format", msg.UUID)
	}
	r.p = r.p[1:]
	out := make([]*message.Message, 0, BatchSize(msg))
	for len(r.p) > 0 && r.err == nil {
		m := message.NewMessage(string(r.bytes()), nil)
		for n := r.uvarint(); n > 0 && r.err == nil; n-- {
			k := string(r.bytes())
			m.Metadata.Set(k, string(r.bytes()))
		}
		m.Payload = r.bytes()
		m.SetContext(msg.Context())
		out = append(out, m)
	}
	if r.err != nil {
		return nil, fmt.Errorf("broker: batch %s: %w", msg.UUID, r.err)
	}
	return out, nil
}

var errTruncated = errors.New("truncated")

// batchReader reads NewBatch's layout; its first error sticks and later reads return nothing.
type batchReader struct {
	p   []byte
	err error
}

func (r *batchReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.err = errTruncated
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *batchReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.p)) {
		r.err = errTruncated
		return nil
	}
	b := r.p[:n:n]
	r.p = r.p[n:]
	return b
}

// IsBatch tells whether msg carries other messages.
func IsBatch(msg *message.Message) bool { return msg.Metadata.Get(MetaBatch) != "" }

// BatchSize is how many messages msg stands for.
func BatchSize(msg *message.Message) int {
	if n, err := strconv.Atoi(msg.Metadata.Get(MetaBatch)); err == nil && n > 0 {
		return n
	}
	return 1
}
