package broker

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

func TestBatchRoundTrip(t *testing.T) {
	var msgs []*message.Message
	for _, c := range []struct{ uuid, payload string }{{"a", `{"x":1}`}, {"b", ""}, {"", "\x00binary\xff"}} {
		m := message.NewMessage(c.uuid, []byte(c.payload))
		m.Metadata.Set("event_id", "evt-"+c.uuid)
		m.Metadata.Set("empty", "")
		msgs = append(msgs, m)
	}
	msgs[1].Metadata = message.Metadata{} // a message without metadata

	batch := NewBatch(msgs)
	require.Equal(t, 3, BatchSize(batch))
	got, err := Unbatch(batch)
	require.NoError(t, err)
	require.Len(t, got, len(msgs))
	for i, m := range got {
		require.Equal(t, msgs[i].UUID, m.UUID)
		require.Equal(t, string(msgs[i].Payload), string(m.Payload))
		require.Equal(t, len(msgs[i].Metadata), len(m.Metadata))
		for k, v := range msgs[i].Metadata {
			require.Equal(t, v, m.Metadata.Get(k), "metadata %q of message %d", k, i)
		}
	}

	// A message that is not a batch is its own content.
	plain := message.NewMessage("p", []byte("x"))
	got, err = Unbatch(plain)
	require.NoError(t, err)
	require.Equal(t, []*message.Message{plain}, got)
	require.Equal(t, 1, BatchSize(plain))
}

func TestUnbatchRefusesDamage(t *testing.T) {
	good := NewBatch([]*message.Message{message.NewMessage("a", []byte("payload"))}).Payload
	for name, p := range map[string][]byte{
		"empty":          {},
		"unknown format": append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-2],
		"length too big": {batchFormat, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		t.Run(name, func(t *testing.T) {
			m := message.NewMessage("batch", p)
			m.Metadata.Set(MetaBatch, "1")
			_, err := Unbatch(m)
			require.Error(t, err)
		})
	}
}

// Unbatch reads what the broker hands over: whatever the bytes, it returns an error or messages,
// never panics, and a batch it wrote reads back the same.
func FuzzUnbatch(f *testing.F) {
	f.Add([]byte(NewBatch([]*message.Message{message.NewMessage("a", []byte(`{"x":1}`))}).Payload))
	f.Add([]byte{batchFormat})
	f.Fuzz(func(t *testing.T, p []byte) {
		m := message.NewMessage("batch", p)
		m.Metadata.Set(MetaBatch, "1")
		items, err := Unbatch(m)
		if err != nil {
			return
		}
		again, err := Unbatch(NewBatch(items))
		if err != nil {
			t.Fatalf("a batch of what Unbatch returned does not read back: %v", err)
		}
		if len(again) != len(items) {
			t.Fatalf("%d messages read back as %d", len(items), len(again))
		}
		for i := range items {
			if again[i].UUID != items[i].UUID || string(again[i].Payload) != string(items[i].Payload) {
				t.Fatalf("message %d changed on the round trip", i)
			}
		}
	})
}
