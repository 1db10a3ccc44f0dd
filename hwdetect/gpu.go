package hwdetect

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/pcidb"
)

// smiFields is what nvidia-smi is asked, in this order. Drivers older than
// 510 do not know compute_cap; smiFieldsOld is asked then.
var (
	smiFields    = []string{"index", "name", "pci.device_id", "compute_cap", "memory.total"}
	smiFieldsOld = []string{"index", "name", "pci.device_id", "memory.total"}
)

func smiArgs(fields []string) []string {
	return []string{"--query-gpu=" + strings.Join(fields, ","), "--format=csv,noheader,nounits"}
}

// computeCapPattern is the form of a compute capability: "8.6", "12.0".
var computeCapPattern = regexp.MustCompile(`^[0-9]{1,2}\.[0-9]$`)

// ValidComputeCap reports whether s has the form MAJOR.MINOR ("8.6").
func ValidComputeCap(s string) bool { return computeCapPattern.MatchString(s) }

// detectGPUs lists NVIDIA GPUs. nvidia-smi, when it answers, is the
// authority on which GPUs exist and their index; the PCI bus (through ghw)
// is the fallback when the driver or nvidia-smi is missing, and lends its
// bus address and driver name. Missing facts are then filled from the PCI
// id table, and GPU_COMPUTE_CAP overrides the compute capability.
func (d *detector) detectGPUs(ctx context.Context) {
	var onBus []GPU
	if d.p.GOOS == "linux" { // ghw reads the PCI bus from sysfs
		onBus = d.pciGPUs()
	}
	gpus := d.smiGPUs(ctx, onBus)
	switch {
	case len(gpus) == 0:
		gpus = onBus
	case len(gpus) == len(onBus):
		// Both are in PCI bus order; pair them when the ids agree.
		for i := range gpus {
			if gpus[i].PCIDeviceID.Value == onBus[i].PCIDeviceID.Value {
				gpus[i].PCIAddress = onBus[i].PCIAddress
				gpus[i].Driver = onBus[i].Driver
			}
		}
	}
	override := strings.TrimSpace(d.p.Getenv("GPU_COMPUTE_CAP"))
	if override != "" && !ValidComputeCap(override) {
		d.note("GPU_COMPUTE_CAP=%q ignored: it must look like 8.6", override)
		override = ""
	}
	for i := range gpus {
		g := &gpus[i]
		if id, ok := parseDeviceID(g.PCIDeviceID.Value); ok {
			if m, ok := lookupPCI(id); ok {
				if !g.ComputeCap.Known() {
					g.ComputeCap = known(m.ComputeCap, SourcePCITable)
				}
				if !g.Name.Known() || g.Name.Source == SourcePCIIDs {
					g.Name = known(m.Name, SourcePCITable)
				}
				if !g.MemoryMiB.Known() && m.MemoryMiB > 0 {
					g.MemoryMiB = known(m.MemoryMiB, SourcePCITable)
				}
			}
		}
		if override != "" {
			g.ComputeCap = known(override, SourceOverride)
		}
		if !g.Name.Known() {
			g.Name = known("NVIDIA GPU "+g.PCIDeviceID.Value, SourcePCITable)
		}
		if g.Driver != "" && g.Driver != "nvidia" {
			d.note("GPU %d uses the %s driver, not nvidia: CUDA will not see it", g.Index, g.Driver)
		}
	}
	d.hw.GPUs = gpus
}

// smiGPUs asks nvidia-smi. onBus are the NVIDIA GPUs on the PCI bus, which
// make a missing nvidia-smi worth a note.
func (d *detector) smiGPUs(ctx context.Context, onBus []GPU) []GPU {
	if d.p.NvidiaSMI == nil {
		return nil
	}
	out, err := d.p.NvidiaSMI(ctx, smiArgs(smiFields)...)
	fields := smiFields
	if err != nil && !errors.Is(err, exec.ErrNotFound) && ctx.Err() == nil {
		// Old drivers refuse the whole query over compute_cap.
		if older, err2 := d.p.NvidiaSMI(ctx, smiArgs(smiFieldsOld)...); err2 == nil {
			out, err, fields = older, nil, smiFieldsOld
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, exec.ErrNotFound):
			driver := slices.ContainsFunc(onBus, func(g GPU) bool { return g.Driver == "nvidia" })
			switch {
			case driver:
				d.note("nvidia-smi not found although the nvidia driver is loaded (in a container, the NVIDIA runtime provides it): GPU facts come from the PCI bus and the PCI id table")
			case len(onBus) > 0:
				d.note("nvidia-smi not found: GPU facts come from the PCI bus and the PCI id table; install the NVIDIA driver")
			}
		default:
			d.note("nvidia-smi failed: %s", firstLine(err, out))
		}
		return nil
	}
	gpus, err := parseSMI(out, fields)
	if err != nil {
		d.note("nvidia-smi: %v", err)
		return nil
	}
	return gpus
}

// parseSMI reads nvidia-smi's CSV (no header, no units) for fields.
func parseSMI(out []byte, fields []string) ([]GPU, error) {
	r := csv.NewReader(bytes.NewReader(out))
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = len(fields)
	records, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	var gpus []GPU
	for _, rec := range records {
		var g GPU
		for i, name := range fields {
			v := strings.TrimSpace(rec[i])
			if v == "" || strings.HasPrefix(v, "[") { // [N/A], [Not Supported]
				continue
			}
			switch name {
			case "index":
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, errors.New("bad index " + strconv.Quote(v))
				}
				g.Index = n
			case "name":
				g.Name = known(v, SourceNvidiaSMI)
			case "pci.device_id":
				if id, ok := parseDeviceID(v); ok {
					g.PCIDeviceID = known(formatDeviceID(id), SourceNvidiaSMI)
				}
			case "compute_cap":
				if ValidComputeCap(v) {
					g.ComputeCap = known(v, SourceNvidiaSMI)
				}
			case "memory.total":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					g.MemoryMiB = known(n, SourceNvidiaSMI)
				}
			}
		}
		gpus = append(gpus, g)
	}
	sort.SliceStable(gpus, func(i, j int) bool { return gpus[i].Index < gpus[j].Index })
	return gpus, nil
}

// pciGPUs lists NVIDIA GPUs on the PCI bus, in bus order. It does not use ghw.GPU, which finds GPUs through DRM and misses
// datacenter GPUs when nvidia-drm is not loaded.
func (d *detector) pciGPUs() []GPU {
	args := append(d.ghwArgs(), ghw.WithPCIDB(d.pciDB()))
	info, err := ghw.PCI(args...)
	if err != nil {
		d.note("PCI: %v", err)
		return nil
	}
	var gpus []GPU
	for _, dev := range info.Devices {
		if dev.Vendor == nil || dev.Class == nil || dev.Product == nil {
			continue
		}
		// Display (VGA, 3D) controllers and processing accelerators; not
		// the audio, USB or NVSwitch functions NVIDIA boards also expose.
		if dev.Vendor.ID != "10de" || (dev.Class.ID != "03" && dev.Class.ID != "12") {
			continue
		}
		g := GPU{PCIAddress: dev.Address, Driver: dev.Driver}
		if id, ok := parseDeviceID(dev.Product.ID); ok {
			g.PCIDeviceID = known(formatDeviceID(id), SourceGHW)
		}
		if dev.Product.Name != "" && dev.Product.Name != "unknown" {
			g.Name = known(dev.Product.Name, SourcePCIIDs)
		}
		gpus = append(gpus, g)
	}
	sort.Slice(gpus, func(i, j int) bool { return gpus[i].PCIAddress < gpus[j].PCIAddress })
	for i := range gpus {
		gpus[i].Index = i
	}
	return gpus
}

// pciDB loads the PCI ID database from the probes' root, never from the
// network; without one (a FROM scratch image) it is empty, and devices keep
// their numeric ids, which is all the PCI id table needs.
func (d *detector) pciDB() *pcidb.PCIDB {
	noNetwork := false
	for _, p := range []string{
		"usr/share/hwdata/pci.ids", "usr/share/misc/pci.ids",
		"usr/share/hwdata/pci.ids.gz", "usr/share/misc/pci.ids.gz",
	} {
		path := d.path(filepath.FromSlash(p))
		if !exists(path) {
			continue
		}
		db, err := pcidb.New(pcidb.WithPath(path), &pcidb.WithOption{EnableNetworkFetch: &noNetwork})
		if err == nil {
			return db
		}
	}
	return &pcidb.PCIDB{
		Classes:  map[string]*pcidb.Class{},
		Vendors:  map[string]*pcidb.Vendor{},
		Products: map[string]*pcidb.Product{},
	}
}

// firstLine describes a failed command by the first line it printed.
func firstLine(err error, out []byte) string {
	text := strings.TrimSpace(string(out))
	var ee *exec.ExitError
	if text == "" && errors.As(err, &ee) {
		text = strings.TrimSpace(string(ee.Stderr))
	}
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	if text == "" {
		return err.Error()
	}
	return text
}
