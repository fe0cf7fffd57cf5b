package ltx

func (d *Decoder) readLegacyFrame(pgno uint32, data []byte) error {
	return d.corrupt(d.n, pgno, "%w: legacy LZ4 frame pages are not supported yet", ErrBadCompression)
}
