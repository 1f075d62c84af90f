package logsync

import (
	"bufio"
	"io"
	stdsync "sync"
	"sync/atomic"
)

// A node following thousands of topics keeps a live session per topic and peer, nearly all
// of them idle. Fixed read and write buffers per session (64 KiB each at first) made up most
// of such a node's memory, so a session borrows its buffers from a pool only while bytes
// are moving: the reader while a frame's bytes are arriving, the writer between the first
// write and the flush. An idle session, blocked waiting for the next frame, holds neither.

// sessionBufferSize sizes the pooled buffers: large enough to batch a catch-up's ~1 KiB
// operations into few stream reads and writes (frames larger than it bypass it).
const sessionBufferSize = 16 << 10

var (
	readerPool = stdsync.Pool{New: func() any { return bufio.NewReaderSize(nil, sessionBufferSize) }}
	writerPool = stdsync.Pool{New: func() any { return bufio.NewWriterSize(nil, sessionBufferSize) }}
)

// lazyReader reads from r through a pooled buffer while data is arriving and gives the
// buffer back whenever it is drained, so waiting for the next frame holds no buffer.
type lazyReader struct {
	r  io.Reader
	br *bufio.Reader
	// held counts the buffers the session holds (shared with its writer), for tests.
	held *atomic.Int32
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.br == nil {
		// Wait for the next bytes without a buffer; once they come, more usually follow.
		n, err := l.r.Read(p)
		if n > 0 && err == nil {
			l.br = readerPool.Get().(*bufio.Reader)
			l.br.Reset(l.r)
			l.held.Add(1)
		}
		return n, err
	}
	n, err := l.br.Read(p)
	if l.br.Buffered() == 0 {
		l.release()
	}
	return n, err
}

func (l *lazyReader) release() {
	if l.br != nil {
		l.br.Reset(nil)
		readerPool.Put(l.br)
		l.br = nil
		l.held.Add(-1)
	}
}

// lazyWriter buffers writes to w in a pooled buffer from the first Write until Flush.
type lazyWriter struct {
	w    io.Writer
	bw   *bufio.Writer
	held *atomic.Int32
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if l.bw == nil {
		l.bw = writerPool.Get().(*bufio.Writer)
		l.bw.Reset(l.w)
		l.held.Add(1)
	}
	return l.bw.Write(p)
}

// Flush writes out what is buffered and, if that succeeded, returns the buffer.
func (l *lazyWriter) Flush() error {
	if l.bw == nil {
		return nil
	}
	if err := l.bw.Flush(); err != nil {
		return err
	}
	l.release()
	return nil
}

func (l *lazyWriter) Buffered() int {
	if l.bw == nil {
		return 0
	}
	return l.bw.Buffered()
}

// release returns the buffer, dropping anything unflushed (the session is over).
func (l *lazyWriter) release() {
	if l.bw != nil {
		l.bw.Reset(nil)
		writerPool.Put(l.bw)
		l.bw = nil
		l.held.Add(-1)
	}
}
