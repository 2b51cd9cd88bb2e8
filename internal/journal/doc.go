// Package journal keeps every accepted inbound record (webhook bodies, poll results, files) as it
// was received, so that `passerelle replay` can feed it again through the live stages for a
// backfill, and reads the testdata files those backfills also start from.
//
// On disk a journal is <dir>/<source>/<YYYY-MM-DD>.jsonl.gz, one file per source and day (in the
// Writer's location), holding one JSON object per line: {"source", "received_at", "metadata",
// "body"}. Each Append adds one gzip member at the end of the file and syncs it before returning;
// concatenated members are one valid gzip stream, so `gzip -dc` reads a day file as it is. A crash
// can only leave the last member cut short: readers report it and keep every line before it, and
// the next Writer to open the file cuts the unacknowledged tail off before appending.
//
// The journal holds personal data (emails, phones, names) as received, on purpose: a replay must
// see what the partner sent. The retention (Options.Retention, PASSERELLE_JOURNAL_RETENTION, 30 days
// by default) is the control, with files and directories readable by their owner only.
//
// The journal sits beside the flow, not in it: a pipeline stage appends records already made
// durable by the broker, so a slow or full disk never costs a webhook its answer.
package journal
