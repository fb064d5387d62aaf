package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Client talks to the instance of a home over its control socket.
type Client struct {
	Socket string
	http   *http.Client
}

// Dial finds the running instance of the home in dir. With none (no socket,
// or a stale one left by a killed instance) it returns ErrNotRunning.
func Dial(dir string) (*Client, error) {
	path := SocketPath(dir)
	if _, err := os.Stat(path); err != nil {
		return nil, ErrNotRunning
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, ErrNotRunning
		}
		return nil, fmt.Errorf("node: control socket %s: %w", path, err)
	}
	c.Close()
	cl := &Client{Socket: path}
	cl.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	return cl, nil
}

// Get decodes GET /v1/PATH into v.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sublog/"+APIVersion+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, v)
}

// Post decodes POST /v1/PATH into v.
func (c *Client) Post(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://sublog/"+APIVersion+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, v)
}

func (c *Client) do(req *http.Request, v any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("node: %s %s: %s: %s", req.Method, req.URL.Path, resp.Status, e.Error)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Shutdown asks the instance to stop and waits (up to timeout) until its
// socket is gone.
func (c *Client) Shutdown(ctx context.Context, timeout time.Duration) (int, error) {
	var r struct {
		PID int `json:"pid"`
	}
	if err := c.Post(ctx, "/shutdown", &r); err != nil {
		// The answer can be cut by the shutdown itself: what counts is
		// that the socket goes away.
		inf, ierr := ReadInfo(filepath.Dir(filepath.Dir(c.Socket)))
		if ierr != nil {
			return 0, err
		}
		r.PID = inf.PID
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("unix", c.Socket, time.Second)
		if err != nil {
			return r.PID, nil
		}
		conn.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return r.PID, fmt.Errorf("node: instance (pid %d) still answers after %v", r.PID, timeout)
}

// Run forwards a CLI command to the instance and returns its exit code.
// Stdin is read only if the command reads it.
func (c *Client) Run(ctx context.Context, cmd Command) (int, error) {
	body, err := json.Marshal(runRequest{Args: cmd.Args, Dir: cmd.Dir, Env: cmd.Env})
	if err != nil {
		return 0, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return 0, ErrNotRunning
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "POST /%s/run HTTP/1.1\r\nHost: sublog\r\nConnection: Upgrade\r\nUpgrade: %s\r\n", APIVersion, RunUpgrade)
	fmt.Fprintf(&hdr, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	hdr.Write(body)
	if _, err := conn.Write(hdr.Bytes()); err != nil {
		return 0, ErrNotRunning
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, fmt.Errorf("node: forwarding the command: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return 0, fmt.Errorf("node: forwarding the command: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	fw := &frameWriter{w: conn}
	sent := false
	for {
		kind, data, err := readFrame(br)
		if err != nil {
			return 0, fmt.Errorf("node: the instance ended the command without an exit code: %w", err)
		}
		switch kind {
		case frameStdout:
			cmd.Stdout.Write(data)
		case frameStderr:
			cmd.Stderr.Write(data)
		case frameWantStdin:
			if !sent {
				sent = true
				go sendStdin(fw, cmd.Stdin)
			}
		case frameExit:
			if len(data) != 4 {
				return 0, errors.New("node: malformed exit frame")
			}
			return int(int32(binary.BigEndian.Uint32(data))), nil
		default:
			return 0, fmt.Errorf("node: unknown frame %q", kind)
		}
	}
}

func sendStdin(fw *frameWriter, r io.Reader) {
	if r == nil {
		fw.write(frameStdinEOF, nil)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if fw.write(frameStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			fw.write(frameStdinEOF, nil)
			return
		}
	}
}
