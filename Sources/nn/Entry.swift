import NNCommands

@main
enum Entry {
    static func main() async {
        BLASKernels.restartWithBetterKernels()
        await NN.main(nil)
    }
}
