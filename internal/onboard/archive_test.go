package onboard

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestArchiveRoundTrip(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "tsdb", "wal"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(src, "incidents.json"), []byte("[]"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "tsdb", "meta.json"), []byte("{}"), 0o600))
	var buf bytes.Buffer
	require.NoError(t, WriteTarGz(&buf, src))
	dest := filepath.Join(t.TempDir(), "x")
	n, err := Extract(bytes.NewReader(buf.Bytes()), dest)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.FileExists(t, filepath.Join(dest, "tsdb", "meta.json"))
	require.DirExists(t, filepath.Join(dest, "tsdb", "wal"))
}

// TestExtractRefusesEscapes: an archive cannot write outside its directory.
func TestExtractRefusesEscapes(t *testing.T) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600}))
	_, _ = tw.Write([]byte("x"))
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	_, err := Extract(&buf, filepath.Join(t.TempDir(), "x"))
	require.ErrorContains(t, err, "unsafe path")
}
