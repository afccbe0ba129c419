package plugins

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// errInvalid marks a request that breaks a protocol limit.
var errInvalid = errors.New("invalid request")

// Error codes on the wire, one per storage sentinel, with the gRPC code a
// client in another language can read without parsing the detail.
var errorCodes = []struct {
	code pb.ErrorCode
	grpc codes.Code
	err  error
}{
	{pb.ErrorCode_NOT_FOUND, codes.NotFound, storage.ErrNotFound},
	{pb.ErrorCode_EXISTS, codes.AlreadyExists, storage.ErrExists},
	{pb.ErrorCode_CONFLICT, codes.Aborted, storage.ErrConflict},
	{pb.ErrorCode_IN_USE, codes.FailedPrecondition, storage.ErrInUse},
	{pb.ErrorCode_UNAVAILABLE, codes.Unavailable, storage.ErrUnavailable},
	{pb.ErrorCode_CANCELED, codes.Canceled, context.Canceled},
	{pb.ErrorCode_DEADLINE_EXCEEDED, codes.DeadlineExceeded, context.DeadlineExceeded},
	{pb.ErrorCode_INVALID_ARGUMENT, codes.InvalidArgument, errInvalid},
	{pb.ErrorCode_UNSUPPORTED, codes.Unimplemented, errors.ErrUnsupported},
}

// toStatus is the plugin side: a backend error as a gRPC status carrying
// its typed code.
func toStatus(err error) error {
	code, gc := pb.ErrorCode_ERROR_CODE_UNSPECIFIED, codes.Unknown
	for _, k := range errorCodes {
		if errors.Is(err, k.err) {
			code, gc = k.code, k.grpc
			break
		}
	}
	st, derr := status.New(gc, err.Error()).WithDetails(&pb.Error{Code: code})
	if derr != nil {
		return status.Error(gc, err.Error())
	}
	return st.Err()
}

// wireError rebuilds an error from the wire, keeping its sentinel.
type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }

// fromStatus is the host side: a status with an Error detail is the
// backend's error (its sentinel restored); anything else is the transport
// failing, which callers see as unavailable (retry, fail closed).
func fromStatus(method string, err error) error {
	st, ok := status.FromError(err)
	if ok {
		for _, d := range st.Details() {
			e, ok := d.(*pb.Error)
			if !ok {
				continue
			}
			for _, k := range errorCodes {
				if k.code == e.Code {
					return &wireError{sentinel: k.err, msg: st.Message()}
				}
			}
			return errors.New(st.Message())
		}
		if st.Code() == codes.Unimplemented {
			return fmt.Errorf("storage plugin: %s: %w", method, errors.ErrUnsupported)
		}
	}
	return fmt.Errorf("storage plugin: %s: %w: %v", method, storage.ErrUnavailable, err)
}
