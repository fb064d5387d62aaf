package node

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// sameUser checks the connecting process's uid (SO_PEERCRED): the socket's
// mode already keeps others out; this is the second lock.
func sameUser(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("node: control socket: uid %d is not this instance's user", cred.Uid)
	}
	return nil
}
