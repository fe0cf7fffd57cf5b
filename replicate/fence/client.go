package fence

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Client runs the fence process from pagefs and keeps it told. Its methods
// never block on the process: commands are queued and written by a
// goroutine, and a process that dies is started again and told the whole
// state.
type Client struct {
	argv []string
	log  *slog.Logger

	mu     sync.Mutex
	state  State     // everything sent so far, for a restarted process
	queue  []Command // sent but not yet written
	pid    int
	closed bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// Start runs argv (pagefs's own executable with the hidden "fence"
// command) as the fence process. The process starts with no deadline and
// no files.
func Start(argv []string, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{argv: argv, log: log, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.supervise()
	return c
}

// Track makes the fence cover the -shm file at path (on the mount).
func (c *Client) Track(path string) { c.send(Command{Op: OpTrack, Path: path}) }

// Untrack stops covering path and releases its lock.
func (c *Client) Untrack(path string) { c.send(Command{Op: OpUntrack, Path: path}) }

// Until sets the write deadline at which the fence locks, by itself, every
// covered file, and lifts a Hold. The zero time means none. t is on Go's
// clock; the fence gets it on its own (see Now).
func (c *Client) Until(t time.Time) { c.send(Command{Op: OpUntil, Time: fromWall(t)}) }

// Hold locks every covered file now, until the next Until.
func (c *Client) Hold() { c.send(Command{Op: OpHold}) }

// PID returns the fence process's pid, or 0 while none runs.
func (c *Client) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pid
}

func (c *Client) send(cmd Command) {
	if strings.ContainsAny(cmd.Path, "\n\r") {
		c.log.Error("fence: a path with a line break cannot be covered", "path", cmd.Path)
		return
	}
	c.mu.Lock()
	c.state.Apply(cmd)
	c.queue = append(c.queue, cmd)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close stops the fence process, which releases every lock.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.done
	return nil
}

// supervise runs the process, restarting it when it dies, and writes the
// queued commands to it.
func (c *Client) supervise() {
	defer close(c.done)
	var last time.Time
	for {
		started := time.Now()
		err := c.runOnce()
		select {
		case <-c.stop:
			return
		default:
		}
		c.log.Error("fence process ended; restarting it", "err", err)
		// Restart at once: while no fence runs, nothing is fenced. Only a
		// process that keeps dying right away is restarted more slowly.
		if started.Sub(last) < time.Second {
			select {
			case <-c.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		last = started
	}
}

// runOnce runs one fence process until it dies or the Client closes.
func (c *Client) runOnce() error {
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	// The fence dies with pagefs; its locks go with it. In its own process
	// group, a terminal's Ctrl-C or Ctrl-Z reaches pagefs alone, which then
	// decides when the fence goes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() {
		c.logEvents(stdout)
		exited <- cmd.Wait()
	}()
	c.mu.Lock()
	c.pid = cmd.Process.Pid
	// A new process is told the whole state; what was queued is in it.
	pending := c.state.Commands()
	c.queue = nil
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.pid = 0
		c.mu.Unlock()
	}()
	for {
		if err := writeCommands(stdin, pending); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return err
		}
		select {
		case <-c.stop:
			stdin.Close() // the process releases its locks and exits
			select {
			case err := <-exited:
				return err
			case <-time.After(2 * time.Second):
				_ = cmd.Process.Kill()
				return <-exited
			}
		case err := <-exited:
			if err == nil {
				err = errors.New("exited")
			}
			return err
		case <-c.wake:
		}
		c.mu.Lock()
		pending, c.queue = c.queue, nil
		c.mu.Unlock()
	}
}

func writeCommands(w io.Writer, cmds []Command) error {
	if len(cmds) == 0 {
		return nil
	}
	var b strings.Builder
	for _, cmd := range cmds {
		b.WriteString(cmd.String())
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// logEvents logs what the fence process reports.
func (c *Client) logEvents(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		what, rest, _ := strings.Cut(sc.Text(), " ")
		switch what {
		case "fenced":
			c.log.Warn("fence: the application's connections can no longer commit to this database (the lease lapsed or moved)", "shm", rest)
		case "lifted":
			c.log.Info("fence: lifted", "shm", rest)
		case "waiting":
			c.log.Warn("fence: a connection still holds the WAL write lock past the write deadline; its transaction commits when it ends", "shm", rest)
		case "opened":
			c.log.Debug("fence: covering", "shm", rest)
		default:
			c.log.Error("fence: "+sc.Text(), "pid", c.PID())
		}
	}
}

// Serve is the fence process's main: it reads commands from r, one per
// line, and runs a Holder on them until r ends, reporting events to w.
func Serve(r io.Reader, w io.Writer) error {
	cmds := make(chan Command)
	h := &Holder{Events: w}
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			cmd, err := ParseCommand(sc.Text())
			if err != nil {
				// w belongs to the Holder's goroutine; a bad line is pagefs's
				// bug, reported on stderr.
				slog.Error("fence", "err", err)
				continue
			}
			cmds <- cmd
		}
	}()
	return h.Run(context.Background(), cmds)
}
