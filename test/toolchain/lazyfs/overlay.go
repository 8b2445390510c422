package main

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// The unit in which pending writes are kept (the page cache's page).
const blockSize = 4096

// overlay: one file's changes since its last sync.
type overlay struct {
	size        int64 // current size
	durableSize int64 // size of the durable image (the backing file)
	// Bytes at or past minSize (the smallest size since the last sync) that are in no dirty block
	// read as zeros: the file was cut there, so the durable image's old bytes are gone.
	minSize int64
	blocks  map[int64][]byte // block index -> current content of a dirty block
}

// cleanBlock reads block b of the current image when it is not dirty: durable bytes below
// min(minSize, durableSize), zeros past it.
func (o *overlay) cleanBlock(fd int, b int64, dst []byte) syscall.Errno {
	for i := range dst {
		dst[i] = 0
	}
	limit := min(o.minSize, o.durableSize)
	start := b * blockSize
	if start >= limit {
		return 0
	}
	want := min(int64(blockSize), limit-start)
	got := int64(0)
	for got < want {
		k, err := syscall.Pread(fd, dst[got:want], start+got)
		if err != nil {
			return fs.ToErrno(err)
		}
		if k == 0 {
			break
		}
		got += int64(k)
	}
	return 0
}

func (o *overlay) read(fd int, buf []byte, off int64) (int, syscall.Errno) {
	if off >= o.size {
		return 0, 0
	}
	end := min(o.size, off+int64(len(buf)))
	tmp := make([]byte, blockSize)
	for p := off; p < end; {
		b := p / blockSize
		inBlock := p - b*blockSize
		n := min(blockSize-inBlock, end-p)
		src, ok := o.blocks[b]
		if !ok {
			if e := o.cleanBlock(fd, b, tmp); e != 0 {
				return 0, e
			}
			src = tmp
		}
		copy(buf[p-off:p-off+n], src[inBlock:inBlock+n])
		p += n
	}
	return int(end - off), 0
}

func (o *overlay) write(fd int, data []byte, off int64) syscall.Errno {
	end := off + int64(len(data))
	for p := off; p < end; {
		b := p / blockSize
		inBlock := p - b*blockSize
		n := min(blockSize-inBlock, end-p)
		blk, ok := o.blocks[b]
		if !ok {
			blk = make([]byte, blockSize)
			if b*blockSize < o.size {
				if e := o.cleanBlock(fd, b, blk); e != 0 {
					return e
				}
			}
			o.blocks[b] = blk
		}
		copy(blk[inBlock:inBlock+n], data[p-off:p-off+n])
		p += n
	}
	if end > o.size {
		o.size = end
	}
	return 0
}

func (o *overlay) truncate(size int64) {
	if size < o.size {
		for b, blk := range o.blocks {
			start := b * blockSize
			if start >= size {
				delete(o.blocks, b)
			} else if start+blockSize > size {
				clear(blk[size-start:])
			}
		}
	}
	o.size = size
	o.minSize = min(o.minSize, size)
}
