// lazyfs: a test tool that loses what a power cut loses.
//
// A FUSE loopback filesystem over a backing directory. The backing directory holds the *durable
// image* of every file; what a program writes and has not synced yet is kept only in this process's
// memory (the "page cache"), per file, as dirty 4 KiB blocks plus a pending size. Reads see the
// current image (durable image + pending changes). fsync/fdatasync of a file writes its pending
// changes into its durable image. Killing this process (SIGKILL) is the power cut: every unsynced
// write is gone, and mounting the backing directory again serves the durable images only. This is
// what Jepsen's LazyFS does with its "clear-cache" fault; written again here as a small tool.
//
// The model, precisely:
//   - write(2), ftruncate(2), truncate(2), open(O_TRUNC) and fallocate(2) are pending until an
//     fsync/fdatasync of the same file (any descriptor of it), or a write through a descriptor
//     opened with O_SYNC/O_DSYNC.
//   - Metadata operations (create, unlink, rename, mkdir, chmod, link) are durable at once (the
//     simplest honest model: a directory fsync is accepted and does nothing). A created file is
//     therefore durable with size 0 until its data is synced.
//   - A power cut drops pending data whole; it never persists part of it (no torn writes).
//   - Files whose name ends in "-shm" (SQLite's shared-memory index, which SQLite rebuilds from the
//     WAL after a crash) pass straight through with the kernel's page cache, so that mmap works;
//     every other file is opened with direct I/O so that every read and write reaches this process.
//
// Usage: lazyfs BACKING_DIR MOUNTPOINT. Prints "ready" on stdout once mounted. SIGTERM/SIGINT:
// a clean shutdown (pending writes made durable, as a kernel does at unmount), then unmount.
// SIGKILL: the power cut (the mount is left dead; `umount -l MOUNTPOINT` and mount again).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

type node struct {
	fs.LoopbackNode
	mu          sync.Mutex
	ov          *overlay
	passthrough bool
}

var (
	dirtyMu sync.Mutex
	dirty   = map[*node]struct{}{}
)

func newNode(root *fs.LoopbackRoot, _ *fs.Inode, name string, _ *syscall.Stat_t) fs.InodeEmbedder {
	return &node{LoopbackNode: fs.LoopbackNode{RootData: root}, passthrough: strings.HasSuffix(name, "-shm")}
}

// idFromStat is go-fuse's loopback inode numbering (LoopbackNode.Lookup), so that a file created
// here and the same file looked up later are one node with one overlay.
func idFromStat(r *fs.LoopbackRoot, st *syscall.Stat_t) fs.StableAttr {
	swapped := (uint64(st.Dev) << 32) | (uint64(st.Dev) >> 32)
	swappedRootDev := (r.Dev << 32) | (r.Dev >> 32)
	return fs.StableAttr{Mode: uint32(st.Mode), Gen: 1, Ino: (swapped ^ swappedRootDev) ^ st.Ino}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, e := n.LoopbackNode.Lookup(ctx, name, out)
	if e == 0 {
		if cn, ok := ch.Operations().(*node); ok {
			cn.patchSize(&out.Attr.Size, &out.Attr.Blocks)
		}
	}
	return ch, e
}

// forget drops the pending changes of a file whose name is removed or replaced (its data can no
// longer be reached by name; SQLite keeps no unlinked file open on the data folder).
func (n *node) forget(name string) {
	ch := n.GetChild(name)
	if ch == nil {
		return
	}
	cn, ok := ch.Operations().(*node)
	if !ok {
		return
	}
	cn.mu.Lock()
	if cn.ov != nil {
		cn.ov = nil
		dirtyMu.Lock()
		delete(dirty, cn)
		dirtyMu.Unlock()
	}
	cn.mu.Unlock()
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.forget(name)
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if np, ok := newParent.(*node); ok && flags&fs.RENAME_EXCHANGE == 0 {
		np.forget(newName)
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) backingPath() string {
	return n.RootData.Path + "/" + n.EmbeddedInode().Path(nil)
}

// overlayLocked returns the node's overlay, creating it from the backing file's size.
func (n *node) overlayLocked(fd int) (*overlay, syscall.Errno) {
	if n.ov != nil {
		return n.ov, 0
	}
	var st syscall.Stat_t
	var err error
	if fd >= 0 {
		err = syscall.Fstat(fd, &st)
	} else {
		err = syscall.Stat(n.backingPath(), &st)
	}
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	n.ov = &overlay{size: st.Size, durableSize: st.Size, minSize: st.Size, blocks: map[int64][]byte{}}
	dirtyMu.Lock()
	dirty[n] = struct{}{}
	dirtyMu.Unlock()
	return n.ov, 0
}

// syncLocked writes the pending changes into the durable image (the backing file).
func (n *node) syncLocked(fd int) syscall.Errno {
	o := n.ov
	if o == nil {
		return 0
	}
	if fd < 0 {
		f, err := syscall.Open(n.backingPath(), syscall.O_RDWR, 0)
		if err != nil {
			return fs.ToErrno(err)
		}
		defer syscall.Close(f)
		fd = f
	}
	if o.minSize < o.durableSize {
		if err := syscall.Ftruncate(fd, o.minSize); err != nil {
			return fs.ToErrno(err)
		}
	}
	if err := syscall.Ftruncate(fd, o.size); err != nil {
		return fs.ToErrno(err)
	}
	for b, blk := range o.blocks {
		start := b * blockSize
		k := min(int64(blockSize), o.size-start)
		if k <= 0 {
			continue
		}
		if _, err := syscall.Pwrite(fd, blk[:k], start); err != nil {
			return fs.ToErrno(err)
		}
	}
	n.ov = nil
	dirtyMu.Lock()
	delete(dirty, n)
	dirtyMu.Unlock()
	return 0
}

func (n *node) patchSize(size *uint64, blocks *uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ov != nil {
		*size = uint64(n.ov.size)
		*blocks = (uint64(n.ov.size) + 511) / 512
	}
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := n.LoopbackNode.Getattr(ctx, nil, out); e != 0 {
		return e
	}
	n.patchSize(&out.Size, &out.Blocks)
	return 0
}

func (n *node) Statx(ctx context.Context, _ fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	if e := n.LoopbackNode.Statx(ctx, nil, flags, mask, out); e != 0 {
		return e
	}
	n.patchSize(&out.Size, &out.Blocks)
	return 0
}

func (n *node) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && !n.passthrough {
		n.mu.Lock()
		o, e := n.overlayLocked(-1)
		if e == 0 {
			o.truncate(int64(sz))
		}
		n.mu.Unlock()
		if e != 0 {
			return e
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	if e := n.LoopbackNode.Setattr(ctx, nil, in, out); e != 0 {
		return e
	}
	n.patchSize(&out.Size, &out.Blocks)
	return 0
}

// openFile makes the handle for a backing descriptor: pending writes with direct I/O, or the plain
// loopback file for a -shm file. An O_TRUNC open truncates the current image only (pending).
func (n *node) openFile(fd int, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.passthrough {
		return fs.NewLoopbackFile(fd), 0, 0
	}
	h := &handle{n: n, fd: fd, syncWrites: flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0}
	if flags&syscall.O_TRUNC != 0 {
		n.mu.Lock()
		o, e := n.overlayLocked(fd)
		if e == 0 {
			o.truncate(0)
		}
		n.mu.Unlock()
		if e != 0 {
			syscall.Close(fd)
			return nil, 0, e
		}
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// backingFlags opens the backing file read-write whatever the caller asked (the kernel enforces the
// caller's access mode on its own descriptor; a sync must write even through a read-only one).
func backingFlags(flags uint32, passthrough bool) int {
	f := int(flags) &^ (syscall.O_APPEND | fuse.FMODE_EXEC | syscall.O_DIRECT)
	if !passthrough {
		f &^= syscall.O_TRUNC | syscall.O_SYNC | syscall.O_DSYNC | syscall.O_ACCMODE
		f |= syscall.O_RDWR
	}
	return f
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fd, err := syscall.Open(n.backingPath(), backingFlags(flags, n.passthrough), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return n.openFile(fd, flags)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	passthrough := strings.HasSuffix(name, "-shm")
	p := n.backingPath() + "/" + name
	fd, err := syscall.Open(p, backingFlags(flags, passthrough)|syscall.O_CREAT, mode)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, fs.ToErrno(err)
	}
	child := newNode(n.RootData, n.EmbeddedInode(), name, &st).(*node)
	ch := n.NewInode(ctx, child, idFromStat(n.RootData, &st))
	// NewInode may return an existing node for this inode.
	cn := ch.Operations().(*node)
	fh, flagsOut, e := cn.openFile(fd, flags)
	if e != 0 {
		return nil, nil, 0, e
	}
	out.FromStat(&st)
	cn.patchSize(&out.Size, &out.Blocks)
	return ch, fh, flagsOut, 0
}

// handle: an open file whose writes are pending until a sync.
type handle struct {
	n          *node
	fd         int
	syncWrites bool
}

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if h.n.ov == nil {
		k, err := syscall.Pread(h.fd, buf, off)
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		return fuse.ReadResultData(buf[:k]), 0
	}
	k, e := h.n.ov.read(h.fd, buf, off)
	if e != 0 {
		return nil, e
	}
	return fuse.ReadResultData(buf[:k]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	o, e := h.n.overlayLocked(h.fd)
	if e != 0 {
		return 0, e
	}
	if e := o.write(h.fd, data, off); e != 0 {
		return 0, e
	}
	if h.syncWrites {
		if e := h.n.syncLocked(h.fd); e != 0 {
			return 0, e
		}
	}
	return uint32(len(data)), 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	return h.n.syncLocked(h.fd)
}

func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	o, e := h.n.overlayLocked(h.fd)
	if e != 0 {
		return e
	}
	if end := int64(off + size); end > o.size {
		o.size = end
	}
	return 0
}

func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	return fs.ToErrno(syscall.Close(h.fd))
}

// syncAll makes every pending change durable (a clean unmount).
func syncAll() {
	dirtyMu.Lock()
	nodes := make([]*node, 0, len(dirty))
	for n := range dirty {
		nodes = append(nodes, n)
	}
	dirtyMu.Unlock()
	for _, n := range nodes {
		n.mu.Lock()
		if e := n.syncLocked(-1); e != 0 {
			fmt.Fprintf(os.Stderr, "lazyfs: sync of %s at shutdown: %v\n", n.backingPath(), e)
		}
		n.mu.Unlock()
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: lazyfs BACKING_DIR MOUNTPOINT")
		os.Exit(2)
	}
	backing, mountpoint := os.Args[1], os.Args[2]
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		fmt.Fprintf(os.Stderr, "lazyfs: %v\n", err)
		os.Exit(1)
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev), NewNode: newNode}
	rootNode := newNode(root, nil, "", &st)
	root.RootNode = rootNode
	zero := time.Duration(0)
	server, err := fs.Mount(mountpoint, rootNode, &fs.Options{
		AttrTimeout:     &zero,
		EntryTimeout:    &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:      "lazyfs",
			Name:        "lazyfs",
			DirectMount: true,
			MaxWrite:    1 << 20,
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "lazyfs: mount: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		syncAll()
		_ = server.Unmount()
	}()
	server.Wait()
}
