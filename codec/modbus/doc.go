// Package modbus is a register-map codec: it names the coils and registers
// of a Modbus device and converts them to typed, scaled points and back.
//
// The happy path:
//
//	rm, err := modbus.New([]modbus.Point{{Name: "temperature", Address: 0, Type: layout.Int16, Scale: 0.1, Unit: "C"}})
//	err = rm.Decode(&gateway.Frame{Topic: "hr/0", Payload: regs}, msg) // temperature = int16(hr0) * 0.1
//	regs, err = rm.Encode(&gateway.Message{Topic: "hr/0", Points: pts}, nil)
//
// # Frame contract (for pollers)
//
// A poller reads one block of one table per request and hands it over as
// one Frame:
//
//   - Frame.Topic names the block: "<table>/<start address>", with table
//     one of hr (holding registers), ir (input registers), coil, di
//     (discrete inputs), e.g. "hr/0" or "ir/100". Levels before those two
//     are ignored, so "plc1/hr/0" works too. Block.String builds it.
//   - Frame.Payload is the block's data as the Modbus response carries it:
//     for registers two bytes per register, big-endian, in address order
//     (len/2 registers); for coils and discrete inputs the bits packed
//     eight per byte, least significant bit first: bit A of a block
//     starting at S is bit (A-S)%8 of byte (A-S)/8.
//
// A packed bit payload does not say how many bits the poller read; the
// register map does. Decode reads every bit point within the 8*len bits,
// so a point in the spare bits of the last byte decodes as whatever the
// poller put there (0 from a Modbus response). Name in the map only bits
// the poller reads; package connector/modbus, which emits exactly these
// frames, plans its reads so that no polled bit falls in another block's
// spare bits.
//
// Decode appends every point of the map that lies wholly inside the block
// and skips the others, so one register map serves all the blocks a
// poller reads. A multi-register point that starts inside the block but
// ends past it is an error (ErrShortFrame naming the point): the poll
// blocks should not split a value.
//
// Writes are the reverse: Gateway.Write passes Message.Topic as the
// Frame.Topic of the write, so set it to the block to write ("hr/10"). The
// payload Encode returns holds the registers (or packed coils) from the
// block start up to the last register the message's points cover, in the
// same encoding as above: the poller issues Write Multiple Registers (0x10)
// at the start address with len/2 registers, or Write Multiple Coils (0x0F)
// with 8*len coils. Every register (or coil) in that span must be covered
// by a point of the message, so a coil write names whole groups of 8; the
// input tables are read-only (ErrNotSupported).
//
// Errors are *layout.FieldError values naming the point (or register) and
// the byte offset in the payload.
//
// In configuration (Config, FromSection), a point's table takes the names
// package connector/modbus takes in its ranges, from one list
// (ParseTableName): hr, ir, coil, di, or holding, input, coils, discrete
// and their long forms. A bad point is reported at its entry of points:
// with its YAML path and position.
package modbus
