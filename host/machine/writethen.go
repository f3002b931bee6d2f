package machine

import "context"

// ThenResult is what the command run after a write (WriteThen) gave: its result, and its
// error as Run returns it.
type ThenResult struct {
	Result Result
	Err    error
}

// ThenWriter is a Host that can write a file and run a command after it in one command (over
// SSH, one session instead of two). WriteThen uses it where the host has it.
type ThenWriter interface {
	WriteFileThen(ctx context.Context, path string, data []byte, opts WriteOptions, then string) (WriteResult, ThenResult, error)
}

// WriteThen writes a file as WriteFile does and, once the file is in place, runs then on the
// host with no stdin: in the write's own command on a ThenWriter, else as WriteFile followed
// by Run. The error is the write's, and then did not run when it is set; then's own outcome
// is the ThenResult.
func WriteThen(ctx context.Context, h Host, path string, data []byte, opts WriteOptions, then string) (WriteResult, ThenResult, error) {
	if tw, ok := h.(ThenWriter); ok {
		return tw.WriteFileThen(ctx, path, data, opts, then)
	}
	res, err := h.WriteFile(ctx, path, data, opts)
	if err != nil {
		return res, ThenResult{}, err
	}
	var tr ThenResult
	tr.Result, tr.Err = h.Run(ctx, then)
	return res, tr, nil
}
