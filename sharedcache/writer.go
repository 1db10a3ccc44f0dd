package sharedcache

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// A write batch is at most this many SETs and about this many bytes, so
// that one round trip stays well inside WriteTimeout on a slow link.
const (
	maxBatchItems = 64
	maxBatchBytes = 1 << 20
)

// closeFlushBound is how long Close lets the writer drain the queue.
const closeFlushBound = time.Second

// write is one queued SET, or, when flushed is set, a Flush marker that the
// writer answers once every write before it is done.
type write struct {
	key     string
	value   []byte // the frame, owned by the queue
	flushed chan<- error
}

// writeLoop is the write-behind writer, the one goroutine that takes from
// the queue until Close.
func (c *Cache) writeLoop() {
	defer close(c.writerDone)
	batch := make([]write, 0, maxBatchItems)
	for {
		select {
		case <-c.stop:
			c.flushOnClose(batch)
			return
		case w := <-c.queue:
			batch = c.collect(append(batch[:0], w))
			c.writeBatch(context.Background(), batch)
		}
	}
}

// collect adds to batch what is queued, without waiting, up to the batch
// limits or a Flush marker, which ends a batch.
func (c *Cache) collect(batch []write) []write {
	size := len(batch[0].value)
	for len(batch) < maxBatchItems && size < maxBatchBytes && batch[len(batch)-1].flushed == nil {
		select {
		case w := <-c.queue:
			batch = append(batch, w)
			size += len(w.value)
		default:
			return batch
		}
	}
	return batch
}

// writeBatch writes batch's SETs in one pipelined round trip, then
// answers its Flush marker, if it ends with one, with the latest error
// since the previous marker.
func (c *Cache) writeBatch(parent context.Context, batch []write) {
	var marker chan<- error
	if last := batch[len(batch)-1]; last.flushed != nil {
		marker, batch = last.flushed, batch[:len(batch)-1]
	}
	if len(batch) > 0 {
		if err := c.set(parent, batch); err != nil {
			c.flushErr = err
		}
	}
	if marker != nil {
		marker <- c.flushErr
		c.flushErr = nil
	}
}

// set is one write round trip through the breaker. Writes that fail are
// dropped and counted; set returns the round trip's error.
func (c *Cache) set(parent context.Context, items []write) error {
	start := time.Now()
	failedItems := 0
	_, err := c.breaker.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(parent, c.cfg.WriteTimeout)
		defer cancel()
		pipe := c.client.Pipeline()
		cmds := make([]*redis.StatusCmd, len(items))
		for i, w := range items {
			cmds[i] = pipe.Set(ctx, w.key, w.value, c.cfg.TTL)
		}
		_, _ = pipe.Exec(ctx)
		var transport, reply error
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				failedItems++
				if isReply(err) {
					reply = err
				} else {
					transport = err
				}
			}
		}
		switch {
		case transport != nil:
			return struct{}{}, failed(parent, transport, true)
		case reply != nil:
			// Redis refused the writes (OOM under noeviction, READONLY):
			// lookups may still work, so the breaker is left alone.
			return struct{}{}, failed(parent, reply, false)
		}
		return struct{}{}, nil
	})
	c.finish(opSet, start, err)
	switch {
	case refused(err):
		c.drop(dropBreakerOpen, len(items))
	case failedItems > 0:
		c.drop(dropFailed, failedItems)
	}
	return err
}

// flushOnClose writes what is queued, for up to closeFlushBound.
func (c *Cache) flushOnClose(batch []write) {
	ctx, cancel := context.WithTimeout(context.Background(), closeFlushBound)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case w := <-c.queue:
			batch = c.collect(append(batch[:0], w))
			c.writeBatch(ctx, batch)
		default:
			return
		}
	}
}

// dropLeftovers empties the queue after the writer has ended, counting
// the writes and answering the Flush markers.
func (c *Cache) dropLeftovers() {
	for {
		select {
		case w := <-c.queue:
			if w.flushed != nil {
				w.flushed <- ErrClosed
			} else {
				c.drop(dropClosed, 1)
			}
		default:
			return
		}
	}
}
