package hwdetect

import (
	"fmt"
	"strconv"
	"strings"
)

// nvidiaVendorID is NVIDIA's PCI vendor id.
const nvidiaVendorID = 0x10de

// pciModel is what the table knows about one NVIDIA device id.
type pciModel struct {
	Name       string
	ComputeCap string
	// MemoryMiB is the board's nominal memory; nvidia-smi reports slightly
	// less where ECC or reserved memory takes a share.
	MemoryMiB int64
}

// pciTable maps exact NVIDIA PCI device ids to their model. Only exact ids
// are listed: neighbouring ids belong to other boards and even other
// generations (0x20B0 is an A100, 0x20BD an A800, 0x2230 an RTX A6000 but
// 0x2236 an A10). Sources: the device lists in NVIDIA's open GPU kernel
// modules README (Turing and newer) and the PCI ID database (Pascal, Volta).
// Boards of one id with several memory sizes carry the smallest.
var pciTable = map[uint16]pciModel{
	// Pascal 6.x and Volta 7.0: older than TEI's minimum (7.5).
	0x15F7: {"Tesla P100 PCIe 12GB", "6.0", 12 * 1024},
	0x15F8: {"Tesla P100 PCIe 16GB", "6.0", 16 * 1024},
	0x15F9: {"Tesla P100 SXM2 16GB", "6.0", 16 * 1024},
	0x1B38: {"Tesla P40", "6.1", 24 * 1024},
	0x1BB3: {"Tesla P4", "6.1", 8 * 1024},
	0x1DB1: {"Tesla V100 SXM2 16GB", "7.0", 16 * 1024},
	0x1DB4: {"Tesla V100 PCIe 16GB", "7.0", 16 * 1024},
	0x1DB5: {"Tesla V100 SXM2 32GB", "7.0", 32 * 1024},
	0x1DB6: {"Tesla V100 PCIe 32GB", "7.0", 32 * 1024},
	0x1DF6: {"Tesla V100S PCIe 32GB", "7.0", 32 * 1024},

	// Turing 7.5.
	0x1EB8: {"Tesla T4", "7.5", 15360},

	// Ampere 8.0.
	0x20B0: {"A100-SXM4-40GB", "8.0", 40 * 1024},
	0x20B2: {"A100-SXM4-80GB", "8.0", 80 * 1024},
	0x20B3: {"A100-SXM-64GB", "8.0", 64 * 1024},
	0x20B5: {"A100 80GB PCIe", "8.0", 80 * 1024},
	0x20F1: {"A100-PCIE-40GB", "8.0", 40 * 1024},
	0x20B7: {"A30", "8.0", 24 * 1024},
	0x20BD: {"A800-SXM4-40GB", "8.0", 40 * 1024},
	0x20F3: {"A800-SXM4-80GB", "8.0", 80 * 1024},
	0x20F5: {"A800 80GB PCIe", "8.0", 80 * 1024},
	0x20F6: {"A800 40GB Active", "8.0", 40 * 1024},

	// Ampere 8.6.
	0x2230: {"RTX A6000", "8.6", 48 * 1024},
	0x2231: {"RTX A5000", "8.6", 24 * 1024},
	0x2235: {"A40", "8.6", 48 * 1024},
	0x2236: {"A10", "8.6", 24 * 1024},
	0x2237: {"A10G", "8.6", 24 * 1024},
	0x25B6: {"A2 / A16", "8.6", 16 * 1024},
	0x2203: {"GeForce RTX 3090 Ti", "8.6", 24 * 1024},
	0x2204: {"GeForce RTX 3090", "8.6", 24 * 1024},
	0x2206: {"GeForce RTX 3080", "8.6", 10 * 1024},
	0x2208: {"GeForce RTX 3080 Ti", "8.6", 12 * 1024},
	0x2484: {"GeForce RTX 3070", "8.6", 8 * 1024},

	// Ada 8.9.
	0x27B8: {"L4", "8.9", 24 * 1024},
	0x26B5: {"L40", "8.9", 48 * 1024},
	0x26B9: {"L40S", "8.9", 48 * 1024},
	0x26BA: {"L20", "8.9", 48 * 1024},
	0x26B1: {"RTX 6000 Ada Generation", "8.9", 48 * 1024},
	0x2684: {"GeForce RTX 4090", "8.9", 24 * 1024},
	0x2685: {"GeForce RTX 4090 D", "8.9", 24 * 1024},
	0x2704: {"GeForce RTX 4080", "8.9", 16 * 1024},
	0x2702: {"GeForce RTX 4080 SUPER", "8.9", 16 * 1024},

	// Hopper 9.0.
	0x2330: {"H100 80GB HBM3", "9.0", 80 * 1024},
	0x2331: {"H100 PCIe", "9.0", 80 * 1024},
	0x2321: {"H100 NVL", "9.0", 94 * 1024},
	0x2339: {"H100", "9.0", 80 * 1024},
	0x2322: {"H800 PCIe", "9.0", 80 * 1024},
	0x2324: {"H800", "9.0", 80 * 1024},
	0x2329: {"H20", "9.0", 96 * 1024},
	0x2335: {"H200", "9.0", 141 * 1024},
	0x233B: {"H200 NVL", "9.0", 141 * 1024},
	0x2342: {"GH200", "9.0", 96 * 1024},

	// Blackwell 10.x: B200 is 10.0; B300 and GB300 are 10.3.
	0x2901: {"B200", "10.0", 180 * 1024},
	0x2909: {"B200", "10.0", 180 * 1024},
	0x2941: {"GB200", "10.0", 186 * 1024},
	0x3182: {"B300 SXM6 AC", "10.3", 268 * 1024},
	0x31C2: {"GB300", "10.3", 268 * 1024},

	// Blackwell 12.x: RTX 50xx and RTX PRO are 12.0; GB10 (DGX Spark) 12.1.
	0x2B85: {"GeForce RTX 5090", "12.0", 32 * 1024},
	0x2B87: {"GeForce RTX 5090 D", "12.0", 32 * 1024},
	0x2C02: {"GeForce RTX 5080", "12.0", 16 * 1024},
	0x2BB1: {"RTX PRO 6000 Blackwell Workstation Edition", "12.0", 96 * 1024},
	0x2BB4: {"RTX PRO 6000 Blackwell Max-Q Workstation Edition", "12.0", 96 * 1024},
	0x2BB5: {"RTX PRO 6000 Blackwell Server Edition", "12.0", 96 * 1024},
	0x2E12: {"GB10", "12.1", 0},
}

// lookupPCI returns the table's entry for a device id.
func lookupPCI(id uint16) (pciModel, bool) {
	m, ok := pciTable[id]
	return m, ok
}

// parseDeviceID reads a PCI device id: "20b0", "0x20B0", or nvidia-smi's
// pci.device_id, which packs device and vendor ("0x20B010DE").
func parseDeviceID(s string) (uint16, bool) {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x")
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil || v == 0 {
		return 0, false
	}
	if v > 0xFFFF {
		if v&0xFFFF != nvidiaVendorID {
			return 0, false
		}
		v >>= 16
	}
	return uint16(v), true
}

func formatDeviceID(id uint16) string { return fmt.Sprintf("0x%04X", id) }
