// Package sftp is passerelle's connector to the partner's SFTP depot, where
// the monthly billing file (clients_a_facturer_AAAA-MM.csv, see CONTRACTS.md)
// is deposited.
//
// It holds the [Uploader] (client side), its [Metrics], and [Server], an
// in-process SFTP server confined to a local directory that tests and the
// sandbox use as the partner. Package sftptest starts a real OpenSSH sshd for
// tests that must prove the client against the server partners actually run.
//
// An upload is atomic from the partner's point of view: data goes to a hidden
// temporary name in the target folder, its size is checked, and only then is
// it renamed to the final name, so a cut connection never leaves a truncated
// file under the final name.
package sftp
